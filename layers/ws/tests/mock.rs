//! The WebSocket reader and writer on a scripted mock connection, in the simulator's
//! virtual time: header edge cases, the payload cap, protocol errors and their close
//! codes, ping and pong, fragmented payloads split across reads, the close handshake,
//! the keepalive, and cancellation of `read`.
use embassy_futures::select::{Either, select};
use tcp_layers_core::{CloseReason, Deadline};
use tcp_layers_mock::{Mock, pattern};
use tcp_layers_sim::{Duration, Instant, Timer, run};
use tcp_layers_ws::mask::unmask_bytewise;
use tcp_layers_ws::{
    CloseStatus, DataKind, Fin, Incoming, Keepalive, Opcode, PieceEnd, ProtocolError, Relay,
    WebSocket, WsConfig, WsError,
};

const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
const NO_KEEPALIVE: WsConfig = WsConfig::new().with_keepalive(Keepalive::Off);

/// A client frame: masked with `KEY` (or unmasked when `mask` is `None`).
fn frame_with(fin: Fin, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![opcode.bits() | if fin == Fin::Final { 0x80 } else { 0 }];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xFFFF {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mut body = payload.to_vec();
    if let Some(key) = mask {
        out.extend_from_slice(&key);
        unmask_bytewise(&mut body, key, 0);
    }
    out.extend_from_slice(&body);
    out
}

fn frame(fin: Fin, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    frame_with(fin, opcode, payload, Some(KEY))
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(Fin::Final, Opcode::Text, payload)
}

fn close_frame(code: u16) -> Vec<u8> {
    frame(Fin::Final, Opcode::Close, &code.to_be_bytes())
}

/// A server close frame as the WebSocket writes it.
fn server_close(code: u16) -> Vec<u8> {
    let [hi, lo] = code.to_be_bytes();
    vec![0x88, 2, hi, lo]
}

/// Virtual time since the simulation started.
fn elapsed() -> Duration {
    Instant::now() - Instant::from_ticks(0)
}

/// Reads every piece until the end of the next message; returns its kind and bytes.
async fn message(ws: &mut WebSocket<Mock>, buf: &mut [u8]) -> (DataKind, Vec<u8>) {
    let mut bytes = Vec::new();
    loop {
        match ws.read(buf).await {
            Ok(Incoming::Data(piece)) => {
                bytes.extend_from_slice(piece.bytes);
                if piece.end == PieceEnd::Message {
                    return (piece.kind, bytes);
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

/// The error a read ends with.
async fn read_error(ws: &mut WebSocket<Mock>) -> WsError<tcp_layers_mock::MockError> {
    let mut buf = [0u8; 64];
    loop {
        match ws.read(&mut buf).await {
            Ok(Incoming::Data(_)) => continue,
            Ok(other) => panic!("{other:?}"),
            Err(e) => return e,
        }
    }
}

#[test]
fn a_masked_text_frame_is_handed_out_unmasked() {
    run(async {
        let mock = Mock::new().with_read(&text(b"Hello"));
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        let mut buf = [0u8; 64];
        let Ok(Incoming::Data(piece)) = ws.read(&mut buf).await else {
            panic!()
        };
        assert_eq!(piece.kind, DataKind::Text);
        assert_eq!(piece.bytes, b"Hello");
        assert_eq!(piece.end, PieceEnd::Message);
        assert!(mock.written().is_empty());
    });
}

#[test]
fn lengths_of_7_16_and_64_bits_and_empty_frames() {
    run(async {
        let long = pattern(70_000);
        let mock = Mock::new()
            .with_read(&frame(Fin::Final, Opcode::Binary, &[]))
            .with_read(&frame(Fin::Final, Opcode::Binary, &pattern(125)))
            .with_read(&frame(Fin::Final, Opcode::Binary, &pattern(126)))
            .with_read(&frame(Fin::Final, Opcode::Binary, &pattern(65535)))
            .with_read(&frame(Fin::Final, Opcode::Binary, &long));
        let config = NO_KEEPALIVE.with_max_message(70_000);
        let mut ws = WebSocket::new(mock, config);
        let mut buf = [0u8; 1000];
        for len in [0, 125, 126, 65535, 70_000] {
            let (kind, bytes) = message(&mut ws, &mut buf).await;
            assert_eq!(kind, DataKind::Binary);
            assert_eq!(bytes, pattern(len), "length {len}");
        }
    });
}

#[test]
fn a_header_split_byte_by_byte_and_a_payload_in_reads_of_7_bytes() {
    run(async {
        // One read per byte for the first frame's 14 bytes of header and more: the
        // reader collects the header across reads and continues the mask across pieces.
        let payload = pattern(70_000);
        let mock =
            Mock::new()
                .with_max_read(7)
                .with_read(&frame(Fin::Final, Opcode::Binary, &payload));
        let config = NO_KEEPALIVE.with_max_message(70_000);
        let mut ws = WebSocket::new(mock, config);
        let mut buf = [0u8; 5];
        let (_, bytes) = message(&mut ws, &mut buf).await;
        assert_eq!(bytes, payload);

        let mock = Mock::new()
            .with_max_read(1)
            .with_read(&text(b"split header"));
        let mut ws = WebSocket::new(mock, NO_KEEPALIVE);
        let mut buf = [0u8; 64];
        assert_eq!(message(&mut ws, &mut buf).await.1, b"split header");
    });
}

#[test]
fn fragments_with_a_ping_between_them_continue_the_mask_across_reads() {
    run(async {
        // A text message: its bytes must be UTF-8 (ASCII letters here).
        let first: Vec<u8> = pattern(1001).iter().map(|b| b'a' + b % 26).collect();
        let second: Vec<u8> = pattern(2003)
            .iter()
            .map(|b| b'A' + (b ^ 0x5A) % 26)
            .collect();
        let mock = Mock::new()
            .with_max_read(97)
            .with_read(&frame(Fin::More, Opcode::Text, &first))
            .with_read(&frame(Fin::Final, Opcode::Ping, b"are you there"))
            .with_read(&frame(Fin::More, Opcode::Continuation, &[]))
            .with_read(&frame(Fin::Final, Opcode::Continuation, &second));
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        let mut buf = [0u8; 333];
        let mut ends = Vec::new();
        let mut bytes = Vec::new();
        loop {
            let Ok(Incoming::Data(piece)) = ws.read(&mut buf).await else {
                panic!()
            };
            assert_eq!(piece.kind, DataKind::Text);
            bytes.extend_from_slice(piece.bytes);
            ends.push(piece.end);
            if piece.end == PieceEnd::Message {
                break;
            }
        }
        assert_eq!(bytes, [first, second].concat());
        assert_eq!(ends.iter().filter(|e| **e == PieceEnd::Frame).count(), 2);
        // The ping was answered with a pong of the same payload.
        let mut pong = vec![0x8A, 13];
        pong.extend_from_slice(b"are you there");
        assert_eq!(mock.written(), pong);
    });
}

#[test]
fn a_frame_over_the_cap_closes_with_1009() {
    run(async {
        let mock = Mock::new().with_read(&frame(Fin::Final, Opcode::Binary, &pattern(16_385)));
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        let e = read_error(&mut ws).await;
        assert_eq!(
            e,
            WsError::Protocol(ProtocolError::TooLarge {
                len: 16_385,
                max: WsConfig::DEFAULT_MAX_MESSAGE
            })
        );
        assert_eq!(mock.written(), server_close(1009));
        assert_eq!(mock.ends(), [CloseReason::LocalClose]);
        // At the cap, the frame is read.
        let mock = Mock::new().with_read(&frame(Fin::Final, Opcode::Binary, &pattern(16_384)));
        let mut ws = WebSocket::new(mock, NO_KEEPALIVE);
        assert_eq!(message(&mut ws, &mut [0u8; 4096]).await.1.len(), 16_384);
    });
}

#[test]
fn a_message_fragmented_past_the_cap_closes_with_1009_before_the_frame_is_read() {
    run(async {
        let config = NO_KEEPALIVE.with_max_message(1000);
        // 600 + 400 bytes is at the cap; the next message starts the count again.
        let at_cap = [
            frame(Fin::More, Opcode::Binary, &pattern(600)),
            frame(Fin::Final, Opcode::Continuation, &pattern(400)),
        ]
        .concat();
        let mock = Mock::new()
            .with_read(&at_cap)
            .with_read(&at_cap)
            .with_read(&frame(Fin::More, Opcode::Binary, &pattern(600)))
            .with_read(&frame(Fin::More, Opcode::Continuation, &pattern(400)))
            .with_read(&frame(Fin::Final, Opcode::Continuation, &pattern(1)));
        let mut ws = WebSocket::new(mock.clone(), config);
        let mut buf = [0u8; 256];
        assert_eq!(message(&mut ws, &mut buf).await.1.len(), 1000);
        assert_eq!(message(&mut ws, &mut buf).await.1.len(), 1000);
        // The third message: its two first frames are handed out, the third frame's
        // header takes it to 1001 bytes.
        let mut handed_out = 0;
        let e = loop {
            match ws.read(&mut buf).await {
                Ok(Incoming::Data(piece)) => handed_out += piece.bytes.len(),
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(handed_out, 1000);
        assert_eq!(
            e,
            WsError::Protocol(ProtocolError::TooLarge {
                len: 1001,
                max: 1000
            })
        );
        assert_eq!(mock.written(), server_close(1009));
        assert_eq!(mock.ends(), [CloseReason::LocalClose]);
    });
}

#[test]
fn a_text_message_that_is_not_utf8_closes_with_1007_even_split_across_frames() {
    run(async {
        // "€ 🦀" cut inside the euro sign between two frames, read 1 byte at a time:
        // valid, handed out piece by piece.
        let crab = "€ 🦀".as_bytes();
        let mock = Mock::new()
            .with_max_read(1)
            .with_read(&frame(Fin::More, Opcode::Text, &crab[..2]))
            .with_read(&frame(Fin::Final, Opcode::Continuation, &crab[2..]))
            .with_read(&text(&crab[..7]));
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        let mut buf = [0u8; 16];
        assert_eq!(message(&mut ws, &mut buf).await.1, crab);
        // A message that ends inside a character is not UTF-8.
        assert_eq!(
            read_error(&mut ws).await,
            WsError::Protocol(ProtocolError::InvalidText)
        );
        assert_eq!(mock.written(), server_close(1007));
        assert_eq!(mock.ends(), [CloseReason::LocalClose]);

        // A byte that is never UTF-8, in the middle of a frame.
        let mock = Mock::new().with_read(&text(b"caf\xFF"));
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        assert_eq!(
            read_error(&mut ws).await,
            WsError::Protocol(ProtocolError::InvalidText)
        );
        assert_eq!(mock.written(), server_close(1007));
        // The same bytes as a binary message are data like any other.
        let mock = Mock::new().with_read(&frame(Fin::Final, Opcode::Binary, b"caf\xFF"));
        let mut ws = WebSocket::new(mock, NO_KEEPALIVE);
        assert_eq!(message(&mut ws, &mut buf).await.1, b"caf\xFF");
    });
}

#[test]
fn protocol_errors_close_with_their_code() {
    let cases: Vec<(Vec<u8>, ProtocolError, u16)> = vec![
        (
            frame_with(Fin::Final, Opcode::Text, b"hi", None),
            ProtocolError::Unmasked,
            1002,
        ),
        (
            vec![0xC1, 0x80, 0, 0, 0, 0],
            ProtocolError::ReservedBits,
            1002,
        ),
        (
            vec![0x83, 0x80, 0, 0, 0, 0],
            ProtocolError::ReservedOpcode(3),
            1002,
        ),
        (
            frame(Fin::More, Opcode::Ping, b""),
            ProtocolError::FragmentedControl,
            1002,
        ),
        (
            vec![0x89, 0xFE, 0, 126],
            ProtocolError::ControlTooLong,
            1002,
        ),
        (
            frame(Fin::Final, Opcode::Continuation, b"x"),
            ProtocolError::UnexpectedContinuation,
            1002,
        ),
        (
            [frame(Fin::More, Opcode::Text, b"a"), text(b"b")].concat(),
            ProtocolError::ExpectedContinuation,
            1002,
        ),
        (
            frame(Fin::Final, Opcode::Close, &[3]),
            ProtocolError::InvalidClose,
            1002,
        ),
        (close_frame(1005), ProtocolError::InvalidClose, 1002),
        (close_frame(999), ProtocolError::InvalidClose, 1002),
        (
            frame(Fin::Final, Opcode::Close, &[0x03, 0xE8, 0xFF, 0xFE]),
            ProtocolError::InvalidCloseReason,
            1007,
        ),
    ];
    for (bytes, error, code) in cases {
        run(async move {
            let mock = Mock::new().with_read(&bytes);
            let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
            assert_eq!(read_error(&mut ws).await, WsError::Protocol(error));
            assert_eq!(error.close_code(), code);
            assert_eq!(mock.written(), server_close(code), "{error:?}");
            assert_eq!(mock.ends(), [CloseReason::LocalClose]);
            assert!(ws.is_closed());
            assert_eq!(read_error(&mut ws).await, WsError::Closed);
        });
    }
}

#[test]
fn a_peer_close_is_echoed_and_the_connection_ends() {
    run(async {
        let mock = Mock::new()
            .with_read(&text(b"bye"))
            .with_read(&close_frame(1000));
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        let mut buf = [0u8; 64];
        assert_eq!(message(&mut ws, &mut buf).await.1, b"bye");
        assert_eq!(
            ws.read(&mut buf).await,
            Ok(Incoming::Closed(CloseStatus::Code(1000)))
        );
        assert_eq!(mock.written(), server_close(1000));
        assert_eq!(mock.ends(), [CloseReason::PeerClosed]);
        assert_eq!(ws.send(DataKind::Text, b"late").await, Err(WsError::Closed));

        // A close without a code is answered without one; a FIN without a close frame
        // ends the connection too.
        let mock = Mock::new().with_read(&frame(Fin::Final, Opcode::Close, &[]));
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        assert_eq!(
            ws.read(&mut buf).await,
            Ok(Incoming::Closed(CloseStatus::NoCode))
        );
        assert_eq!(mock.written(), [0x88, 0]);
        let mock = Mock::new().with_fin();
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        assert_eq!(
            ws.read(&mut buf).await,
            Ok(Incoming::Closed(CloseStatus::NoCloseFrame))
        );
        assert_eq!(mock.ends(), [CloseReason::PeerClosed]);
    });
}

#[test]
fn a_local_close_waits_for_the_peers_close_within_the_timeout() {
    run(async {
        // The peer sends one more message, then answers the close 100 ms later.
        let mock = Mock::new()
            .with_read_at(Duration::from_millis(50), &text(b"in flight"))
            .with_read_at(Duration::from_millis(100), &close_frame(1000));
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        assert_eq!(ws.close(1001).await, Ok(()));
        assert_eq!(elapsed(), Duration::from_millis(100));
        assert_eq!(mock.written(), server_close(1001));
        assert_eq!(mock.ends(), [CloseReason::LocalClose]);
    });
    run(async {
        // The peer never answers: the end comes after the close timeout.
        let mock = Mock::new();
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        assert_eq!(ws.close(1000).await, Ok(()));
        assert_eq!(elapsed(), WsConfig::DEFAULT_CLOSE_TIMEOUT);
        assert_eq!(mock.ends(), [CloseReason::LocalClose]);
        assert_eq!(ws.close(1000).await, Err(WsError::Closed));
    });
}

#[test]
fn the_writer_sends_unmasked_frames() {
    run(async {
        let mock = Mock::new();
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        ws.send(DataKind::Text, b"hi").await.unwrap();
        ws.send(DataKind::Binary, &pattern(300)).await.unwrap();
        ws.ping(b"p").await.unwrap();
        ws.send_frame(Opcode::Pong, Fin::Final, b"").await.unwrap();
        assert_eq!(
            ws.send_frame(Opcode::Ping, Fin::Final, &[0; 126]).await,
            Err(WsError::InvalidFrame)
        );
        assert_eq!(
            ws.send_frame(Opcode::Close, Fin::More, &[]).await,
            Err(WsError::InvalidFrame)
        );
        let mut expected = vec![0x81, 2, b'h', b'i', 0x82, 126, 0x01, 0x2C];
        expected.extend_from_slice(&pattern(300));
        expected.extend_from_slice(&[0x89, 1, b'p', 0x8A, 0]);
        assert_eq!(mock.written(), expected);
    });
}

const KEEPALIVE: Keepalive = Keepalive::ping(Duration::from_secs(30), Duration::from_secs(10));

#[test]
fn the_keepalive_pings_a_silent_peer_then_ends_it() {
    run(async {
        let mock = Mock::new().with_read(&text(b"hello"));
        let mut ws = WebSocket::new(mock.clone(), WsConfig::new().with_keepalive(KEEPALIVE));
        let mut buf = [0u8; 64];
        assert_eq!(message(&mut ws, &mut buf).await.1, b"hello");
        assert_eq!(ws.read(&mut buf).await, Err(WsError::PeerSilent));
        // Ping at 30 s, the end 10 s later: exactly interval + deadline after the last
        // byte, in virtual time.
        assert_eq!(elapsed(), Duration::from_secs(40));
        assert_eq!(mock.written(), [0x89, 0]);
        assert_eq!(mock.ends(), [CloseReason::Reaped(Deadline::Keepalive)]);
        assert!(ws.is_closed());
    });
}

#[test]
fn a_pong_or_any_frame_keeps_the_connection() {
    run(async {
        // A pong 35 s in (5 s after the ping), a message at 60 s; then silence: the next
        // ping at 90 s, the end at 100 s.
        let mock = Mock::new()
            .with_read_at(
                Duration::from_secs(35),
                &frame(Fin::Final, Opcode::Pong, &[]),
            )
            .with_read_at(Duration::from_secs(60), &text(b"still here"));
        let mut ws = WebSocket::new(mock.clone(), WsConfig::new().with_keepalive(KEEPALIVE));
        let mut buf = [0u8; 64];
        assert_eq!(message(&mut ws, &mut buf).await.1, b"still here");
        assert_eq!(elapsed(), Duration::from_secs(60));
        assert_eq!(ws.read(&mut buf).await, Err(WsError::PeerSilent));
        assert_eq!(elapsed(), Duration::from_secs(100));
        assert_eq!(mock.written(), [0x89, 0, 0x89, 0]);

        // Without the keepalive the same silent peer holds the connection: still open
        // after an hour.
        let mock = Mock::new();
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        let held = select(ws.read(&mut buf), Timer::after(Duration::from_secs(3600))).await;
        assert!(matches!(held, Either::Second(())));
        assert!(mock.ends().is_empty() && mock.written().is_empty());
    });
}

#[test]
fn a_cancelled_read_loses_nothing() {
    run(async {
        // The frame arrives a byte every 3 ms; every read is cancelled after 2 ms, again
        // and again, in the header and in the payload.
        let bytes = [
            text(b"cancel me"),
            frame(Fin::Final, Opcode::Ping, b"x"),
            text(b"!"),
        ]
        .concat();
        let mut mock = Mock::new();
        for (i, b) in bytes.iter().enumerate() {
            mock = mock.with_read_at(Duration::from_millis(3 * i as u64 + 1), &[*b]);
        }
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        let mut cancelled = 0;
        while got.len() < 10 {
            match select(ws.read(&mut buf), Timer::after(Duration::from_millis(2))).await {
                Either::First(Ok(Incoming::Data(piece))) => got.extend_from_slice(piece.bytes),
                Either::First(other) => panic!("{other:?}"),
                Either::Second(()) => cancelled += 1,
            }
        }
        assert_eq!(got, b"cancel me!");
        assert!(cancelled > 10);
        assert_eq!(mock.written(), [0x8A, 1, b'x']);
    });
}

#[test]
fn a_send_the_peer_never_acknowledges_ends_after_interval_plus_deadline() {
    run(async {
        let mock = Mock::new().with_acks(tcp_layers_mock::Acks::Never);
        let mut ws = WebSocket::new(mock.clone(), WsConfig::new().with_keepalive(KEEPALIVE));
        assert_eq!(
            ws.send(DataKind::Binary, &pattern(1000)).await,
            Err(WsError::PeerSilent)
        );
        assert_eq!(elapsed(), Duration::from_secs(40));
        assert_eq!(mock.ends(), [CloseReason::Reaped(Deadline::Keepalive)]);
    });
}

#[test]
fn a_separate_reader_and_writer_work_as_one_transport() {
    run(async {
        let mock = Mock::new().with_read(&frame(Fin::Final, Opcode::Ping, b"hi"));
        let halves = tcp_layers_ws::Halves {
            read: mock.clone(),
            write: mock.clone(),
        };
        let mut ws = WebSocket::new(halves, NO_KEEPALIVE);
        ws.send(DataKind::Text, b"ok").await.unwrap();
        // The ping is answered, then the peer's silence: nothing more arrives.
        let mut buf = [0u8; 8];
        let read = select(ws.read(&mut buf), Timer::after(Duration::from_secs(1))).await;
        assert!(matches!(read, Either::Second(())));
        assert_eq!(mock.written(), [0x81, 2, b'o', b'k', 0x8A, 2, b'h', b'i']);
        // A Halves' end only flushes: the server that owns the socket closes it.
        assert_eq!(ws.close(1000).await, Ok(()));
        assert!(mock.ends().is_empty());
    });
}

/// The server's frames in `bytes` (unmasked, lengths under 64 KiB): FIN, opcode bits,
/// payload.
fn server_frames(mut bytes: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while let [b0, b1, rest @ ..] = bytes {
        let (len, rest) = match b1 & 0x7F {
            126 => (
                usize::from(u16::from_be_bytes([rest[0], rest[1]])),
                &rest[2..],
            ),
            n => (usize::from(n), rest),
        };
        frames.push((b0 & 0x80 != 0, b0 & 0x0F, rest[..len].to_vec()));
        bytes = &rest[len..];
    }
    frames
}

#[test]
fn a_relay_sends_each_message_on_piece_by_piece_with_its_kind_first() {
    run(async {
        let first = pattern(700);
        let second = pattern(301);
        let mock = Mock::new()
            .with_max_read(97)
            .with_read(&frame(Fin::More, Opcode::Binary, &first))
            .with_read(&frame(Fin::Final, Opcode::Continuation, &second))
            .with_read(&text(b"one frame"));
        let mut ws = WebSocket::new(mock.clone(), NO_KEEPALIVE);
        let mut buf = [0u8; 128];
        let mut relay = Relay::new();
        for _ in 0..2 {
            loop {
                let Ok(Incoming::Data(piece)) = ws.read(&mut buf).await else {
                    panic!()
                };
                let end = piece.end;
                let (opcode, fin) = relay.frame_for(&piece);
                ws.send_frame(opcode, fin, piece.bytes).await.unwrap();
                if end == PieceEnd::Message {
                    break;
                }
            }
        }
        let frames = server_frames(&mock.written());
        // More than one frame for the binary message: it went on piece by piece.
        let (binary, rest) = frames.split_at(frames.len() - 1);
        assert!(binary.len() > 2, "{} frames", binary.len());
        assert_eq!(binary[0].1, Opcode::Binary.bits());
        assert!(
            binary[1..]
                .iter()
                .all(|f| f.1 == Opcode::Continuation.bits())
        );
        let fins: Vec<bool> = binary.iter().map(|f| f.0).collect();
        assert_eq!(fins.iter().filter(|fin| **fin).count(), 1);
        assert_eq!(fins.last(), Some(&true));
        let payload: Vec<u8> = binary.iter().flat_map(|f| f.2.clone()).collect();
        assert_eq!(payload, [first, second].concat());
        // The next message starts with its own kind again.
        assert_eq!(rest[0], (true, Opcode::Text.bits(), b"one frame".to_vec()));
    });
}
