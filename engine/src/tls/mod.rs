//! Host identity and peer trust for mutual TLS (being written).
