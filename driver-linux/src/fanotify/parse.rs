//! Parser of the byte stream `read(2)` returns on a fanotify descriptor in FID mode.
//!
//! nix 0.31's `Fanotify::read_events` only copies out `fanotify_event_metadata` and skips
//! the information records that follow it, which in FID mode are the whole point (they
//! carry the directory file handle and the name), so the stream is parsed here instead.
//! The parser works on a byte slice with explicit offsets and `from_ne_bytes`: no `unsafe`,
//! every length the kernel gives is checked against the bytes actually present, and a
//! malformed length is an `Err`, never a panic or an out-of-bounds read.
//!
//! Layout (include/uapi/linux/fanotify.h, native endianness):
//! ```text
//! fanotify_event_metadata   event_len u32 | vers u8 | reserved u8 | metadata_len u16
//!                           | mask u64 | fd i32 | pid i32                 (24 bytes)
//! then, up to event_len, information records:
//! fanotify_event_info_header  info_type u8 | pad u8 | len u16   (len covers the record)
//! fanotify_event_info_fid     header | fsid [i32; 2] | struct file_handle
//! struct file_handle          handle_bytes u32 | handle_type i32 | f_handle[handle_bytes]
//! *_DFID_NAME records         ... then a NUL-terminated name, padded to 4 bytes
//! ```

/// Size of `struct fanotify_event_metadata`.
pub const METADATA_LEN: usize = 24;
/// `info header (4) + fsid (8) + file_handle header (8)`.
const FID_HEADER_LEN: usize = 20;

/// One information record carrying a file handle (`FAN_EVENT_INFO_TYPE_{FID, DFID,
/// DFID_NAME, OLD_DFID_NAME, NEW_DFID_NAME}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FidInfo<'a> {
    pub info_type: u8,
    /// `__kernel_fsid_t` as raw bytes, comparable with `statfs(2)`'s `f_fsid`.
    pub fsid: [u8; 8],
    pub handle_type: i32,
    pub handle: &'a [u8],
    /// The entry name, without its NUL (only the `*_NAME` record types have one).
    pub name: Option<&'a [u8]>,
}

/// One event: the metadata and its file-handle records (other record types are skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent<'a> {
    pub mask: u64,
    /// `FAN_NOFD` (-1) in FID mode.
    pub fd: i32,
    pub pid: i32,
    pub fids: Vec<FidInfo<'a>>,
}

/// Reads `N` bytes at `at`, or explains which field did not fit.
fn take<const N: usize>(buf: &[u8], at: usize, what: &str) -> Result<[u8; N], String> {
    at.checked_add(N)
        .and_then(|end| buf.get(at..end))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| {
            format!(
                "{what} at byte {at} runs past the end ({} bytes)",
                buf.len()
            )
        })
}

/// Parses every event of one `read(2)`. The kernel only returns whole events, so any
/// length that does not fit is corruption.
pub fn parse_events(buf: &[u8]) -> Result<Vec<RawEvent<'_>>, String> {
    let mut events = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let ev = &buf[off..];
        let event_len = u32::from_ne_bytes(take(ev, 0, "event_len")?) as usize;
        let [vers] = take::<1>(ev, 4, "vers")?;
        let metadata_len = u16::from_ne_bytes(take(ev, 6, "metadata_len")?) as usize;
        if vers != libc::FANOTIFY_METADATA_VERSION {
            return Err(format!(
                "event at byte {off}: metadata version {vers}, expected {}",
                libc::FANOTIFY_METADATA_VERSION
            ));
        }
        if metadata_len < METADATA_LEN || metadata_len > event_len || event_len > ev.len() {
            return Err(format!(
                "event at byte {off}: event_len {event_len}, metadata_len {metadata_len} with {} bytes left",
                ev.len()
            ));
        }
        let ev = &ev[..event_len];
        let mut event = RawEvent {
            mask: u64::from_ne_bytes(take(ev, 8, "mask")?),
            fd: i32::from_ne_bytes(take(ev, 16, "fd")?),
            pid: i32::from_ne_bytes(take(ev, 20, "pid")?),
            fids: Vec::new(),
        };
        let mut rec_off = metadata_len;
        while rec_off < event_len {
            let [info_type] = take::<1>(ev, rec_off, "info_type")?;
            let len = u16::from_ne_bytes(take(ev, rec_off + 2, "info len")?) as usize;
            if len < 4 || rec_off + len > event_len {
                return Err(format!(
                    "event at byte {off}: info record at {rec_off} has length {len}, event has {event_len}"
                ));
            }
            if let Some(fid) = parse_fid(info_type, &ev[rec_off..rec_off + len])
                .map_err(|e| format!("event at byte {off}, info record at {rec_off}: {e}"))?
            {
                event.fids.push(fid);
            }
            rec_off += len;
        }
        events.push(event);
        off += event_len;
    }
    Ok(events)
}

/// Parses one record (`rec` is exactly its `len` bytes); `None` for types without a handle.
fn parse_fid(info_type: u8, rec: &[u8]) -> Result<Option<FidInfo<'_>>, String> {
    use libc::{
        FAN_EVENT_INFO_TYPE_DFID, FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_FID,
        FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
    };
    let named = match info_type {
        FAN_EVENT_INFO_TYPE_FID | FAN_EVENT_INFO_TYPE_DFID => false,
        FAN_EVENT_INFO_TYPE_DFID_NAME
        | FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
        | FAN_EVENT_INFO_TYPE_NEW_DFID_NAME => true,
        _ => return Ok(None), // pidfd, error, range, mount records: not used
    };
    let fsid = take::<8>(rec, 4, "fsid")?;
    let handle_bytes = u32::from_ne_bytes(take(rec, 12, "handle_bytes")?) as usize;
    let handle_type = i32::from_ne_bytes(take(rec, 16, "handle_type")?);
    if handle_bytes > libc::MAX_HANDLE_SZ as usize || FID_HEADER_LEN + handle_bytes > rec.len() {
        return Err(format!(
            "file handle of {handle_bytes} bytes in a {}-byte record",
            rec.len()
        ));
    }
    let handle = &rec[FID_HEADER_LEN..FID_HEADER_LEN + handle_bytes];
    let name = if named {
        let rest = &rec[FID_HEADER_LEN + handle_bytes..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("name without terminating NUL")?;
        Some(&rest[..nul])
    } else {
        None
    };
    Ok(Some(FidInfo {
        info_type,
        fsid,
        handle_type,
        handle,
        name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An information record to build: (info_type, handle, name).
    type Rec<'a> = (u8, &'a [u8], Option<&'a [u8]>);

    /// Builds one event with the given records, as the kernel would.
    fn event(mask: u64, pid: i32, recs: &[Rec<'_>]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, handle, name) in recs {
            let mut r = vec![*t, 0, 0, 0];
            r.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]); // fsid
            r.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
            r.extend_from_slice(&1i32.to_ne_bytes());
            r.extend_from_slice(handle);
            if let Some(n) = name {
                r.extend_from_slice(n);
                r.push(0);
            }
            r.resize(r.len().div_ceil(4) * 4, 0);
            let len = r.len() as u16;
            r[2..4].copy_from_slice(&len.to_ne_bytes());
            body.extend_from_slice(&r);
        }
        let mut ev = ((METADATA_LEN + body.len()) as u32).to_ne_bytes().to_vec();
        ev.extend_from_slice(&[libc::FANOTIFY_METADATA_VERSION, 0]);
        ev.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        ev.extend_from_slice(&mask.to_ne_bytes());
        ev.extend_from_slice(&libc::FAN_NOFD.to_ne_bytes());
        ev.extend_from_slice(&pid.to_ne_bytes());
        ev.extend_from_slice(&body);
        ev
    }

    #[test]
    fn parses_well_formed_events() {
        let mut buf = event(
            libc::FAN_CREATE,
            7,
            &[
                (
                    libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
                    b"12345678",
                    Some(b"file"),
                ),
                (libc::FAN_EVENT_INFO_TYPE_FID, b"abcd", None),
            ],
        );
        buf.extend(event(libc::FAN_Q_OVERFLOW, 0, &[]));
        let evs = parse_events(&buf).unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(
            (evs[0].mask, evs[0].pid, evs[0].fd),
            (libc::FAN_CREATE, 7, -1)
        );
        assert_eq!(evs[0].fids[0].name, Some(&b"file"[..]));
        assert_eq!(evs[0].fids[0].handle, b"12345678");
        assert_eq!(evs[0].fids[0].fsid, [1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            (evs[0].fids[1].handle, evs[0].fids[1].name),
            (&b"abcd"[..], None)
        );
        assert!(evs[1].fids.is_empty());
    }

    #[test]
    fn malformed_buffers_are_errors() {
        let good = event(
            libc::FAN_CREATE,
            1,
            &[(libc::FAN_EVENT_INFO_TYPE_DFID_NAME, b"12345678", Some(b"f"))],
        );
        let set_u32 =
            |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        let set_u16 =
            |b: &mut Vec<u8>, at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut b = good.clone();
        set_u32(&mut b, 0, good.len() as u32 + 4);
        cases.push(("event_len past the buffer", b));
        let mut b = good.clone();
        set_u32(&mut b, 0, 8);
        cases.push(("event_len below the metadata", b));
        let mut b = good.clone();
        set_u32(&mut b, 0, 0);
        cases.push(("zero event_len", b));
        cases.push(("truncated metadata", good[..10].to_vec()));
        let mut b = good.clone();
        set_u16(&mut b, 6, 4);
        cases.push(("metadata_len too small", b));
        let mut b = good.clone();
        b[4] = 2;
        cases.push(("wrong version", b));
        let mut b = good.clone();
        set_u16(&mut b, METADATA_LEN + 2, 200);
        cases.push(("info record past the event", b));
        let mut b = good.clone();
        set_u16(&mut b, METADATA_LEN + 2, 0);
        cases.push(("zero-length info record", b));
        let mut b = good.clone();
        set_u16(&mut b, METADATA_LEN + 2, 12);
        set_u32(&mut b, 0, (METADATA_LEN + 12) as u32);
        b.truncate(METADATA_LEN + 12);
        cases.push(("info record truncated before the handle", b));
        let mut b = good.clone();
        set_u32(&mut b, METADATA_LEN + 12, 64);
        cases.push(("handle longer than the record", b));
        let mut b = good.clone();
        for x in &mut b[METADATA_LEN + FID_HEADER_LEN + 8..] {
            *x = b'x';
        }
        cases.push(("name without NUL", b));
        for (what, buf) in cases {
            assert!(parse_events(&buf).is_err(), "{what} was accepted");
        }
        assert!(parse_events(&good).is_ok());
    }
}
