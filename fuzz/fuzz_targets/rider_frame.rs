//! The rider socket's input path on arbitrary bytes: WebSocket framing (the server-side
//! codec with the 16 KiB limit, as `ws/conn.rs` reads), then each text frame through the
//! frame decoder, then every point through the coordinate checks and the location rules.
//! Nothing here may panic, however the bytes are built.
#![no_main]

use actix_http::ws::{Codec, Frame};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use medify::ws::rider::{decode, Inbound, MAX_FRAME};
use medify_actors::model::check_fix;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = Codec::new().max_size(MAX_FRAME);
    let mut buf = BytesMut::from(data);
    // Each decode consumes bytes or stops, so this ends.
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        if let Frame::Text(bytes) = frame {
            if let Ok(text) = std::str::from_utf8(&bytes) {
                frame_text(text);
            }
        }
    }
    // The same bytes as one text frame's payload.
    if let Ok(text) = std::str::from_utf8(data) {
        frame_text(text);
    }
});

fn frame_text(text: &str) {
    let Ok(message) = decode(text) else { return };
    let points = match message {
        Inbound::Location(p) => vec![p],
        Inbound::Locations { points } => points,
        _ => return,
    };
    let mut last = None;
    for now in [0, 1_764_000_000_000, i64::MIN, i64::MAX] {
        for point in &points {
            if let Ok(fix) = point.fix() {
                if check_fix(last.as_ref(), &fix, now).is_ok() {
                    last = Some(fix);
                }
            }
        }
    }
}
