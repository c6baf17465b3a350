//! Complete HTTP/1.1 answers a layer sends by itself, each closing the connection.

/// `431 Request Header Fields Too Large`, empty, closing: the answer to a request head
/// longer than the device accepts (the reaper's default for an oversized head).
pub const REPLY_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
Content-Length: 0\r\nConnection: close\r\n\r\n";

/// `503 Service Unavailable` with `Retry-After: 1`, empty, closing: the answer to a
/// request the budget refuses after it waited for a request slot longer than its queue
/// bound. Pass it to the budget's `with_refusal_reply`.
///
/// One second: a request waits for a slot only while the device serves as many
/// requests as it can, which lasts a response time, not minutes.
pub const REPLY_503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// The answer to a stream request that the stream budget refuses: an event stream that
/// only sets the reconnection time to 5 s, then ends (`Connection: close`, no length:
/// the FIN ends the body).
///
/// A browser's `EventSource` treats a non-200 answer (503 included) or a wrong
/// `Content-Type` as fatal and never reconnects by itself; a `200 text/event-stream`
/// that closes is a stream that ended, after which the HTML standard has it reconnect
/// once the reconnection time (`retry:`) has passed. 5 s because a stream slot frees
/// when another viewer leaves, which takes a person seconds, not milliseconds.
/// `Cache-Control: no-store` keeps a cache from replaying the refusal.
pub const REPLY_RETRY_STREAM: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n\
retry: 5000\n\n";
