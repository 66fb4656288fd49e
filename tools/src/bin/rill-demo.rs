//! `rill-demo`: the main job on an embedded default (see `rill_tools::demo`).

fn main() {
    let result = rill_tools::demo::rilld_beside_me()
        .and_then(|rilld| rill_tools::demo::run(&rilld, &mut std::io::stdout().lock()));
    if let Err(e) = result {
        eprintln!("rill-demo: {e:#}");
        std::process::exit(1);
    }
}
