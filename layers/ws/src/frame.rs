//! RFC 6455 frame headers (section 5.2): parsing a client's header from the bytes
//! received so far, and writing a server's header. No allocation; no panic on any
//! input.
//!
//! ```text
//!  byte 0: FIN RSV1 RSV2 RSV3 opcode(4)    byte 1: MASK length(7)
//!  length 126: a 16-bit length follows; 127: a 64-bit length follows (top bit 0)
//!  then the 4-byte masking key if MASK is set, then the payload
//! ```

/// The longest header: 2 bytes, an 8-byte length and a 4-byte key.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// What a frame carries (the 4-bit opcode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Opcode {
    /// `0x0`: the next fragment of the message in progress.
    Continuation,
    /// `0x1`: the first frame of a text message (UTF-8).
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: the close handshake, with an optional status code and reason.
    Close,
    /// `0x9`: a ping; the other side answers with a pong of the same payload.
    Ping,
    /// `0xA`: a pong, the answer to a ping (or an unasked heartbeat).
    Pong,
}

impl Opcode {
    /// The opcode of these 4 bits; `None` for the reserved values (3-7, 0xB-0xF).
    pub const fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The 4 bits on the wire.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// True for close, ping and pong: at most 125 bytes of payload, never fragmented,
    /// allowed between the fragments of a message.
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Whether a frame is the last of its message (the FIN bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Fin {
    /// FIN clear: continuation frames follow.
    More,
    /// FIN set: the message ends with this frame.
    Final,
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameHeader {
    /// The FIN bit.
    pub fin: Fin,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload's length in bytes (at most 2^63 - 1).
    pub payload_len: u64,
}

/// What [`parse_header`] found in the bytes received so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Parse {
    /// The header is not complete: at least `needed` more bytes (never more than the
    /// header still lacks, so reading exactly that many never reads into the payload).
    Incomplete {
        /// Bytes still missing, 1..=13.
        needed: usize,
    },
    /// A whole, valid header of `len` bytes (2..=14); the payload starts after it.
    Complete {
        /// The header.
        header: FrameHeader,
        /// Its length in bytes.
        len: usize,
    },
}

/// Why a peer's frames break the protocol; each maps to the close status code the
/// connection is closed with ([`ProtocolError::close_code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProtocolError {
    /// RSV1, RSV2 or RSV3 set with no extension negotiated (1002).
    ReservedBits,
    /// An opcode the protocol reserves (3-7, 0xB-0xF) (1002).
    ReservedOpcode(u8),
    /// A 64-bit length with its top bit set (1002).
    LengthTooLarge,
    /// A control frame with more than 125 bytes of payload (1002).
    ControlTooLong,
    /// A control frame without FIN (1002).
    FragmentedControl,
    /// A client frame without a masking key: clients must mask (1002).
    Unmasked,
    /// A continuation frame with no message in progress (1002).
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is still in progress (1002).
    ExpectedContinuation,
    /// A close frame with a 1-byte payload, or a status code that may not be sent
    /// (below 1000, 1004-1006, 1015, unassigned 1016-2999, 5000 and above) (1002).
    InvalidClose,
    /// A close frame's reason is not UTF-8 (1007).
    InvalidCloseReason,
    /// A text message is not UTF-8 (1007).
    InvalidText,
    /// A message is longer than the configured cap (1009).
    TooLarge {
        /// The message's payload length with the frame that took it past the cap.
        len: u64,
        /// The cap.
        max: u64,
    },
}

impl ProtocolError {
    /// The close status code the connection is closed with: 1002 (protocol error),
    /// 1007 (invalid payload data) or 1009 (message too big).
    pub const fn close_code(self) -> u16 {
        match self {
            Self::InvalidCloseReason | Self::InvalidText => close_code::INVALID_DATA,
            Self::TooLarge { .. } => close_code::TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }

    /// A short, stable name, e.g. `"unmasked"` or `"too_large"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ReservedBits => "reserved_bits",
            Self::ReservedOpcode(_) => "reserved_opcode",
            Self::LengthTooLarge => "length_too_large",
            Self::ControlTooLong => "control_too_long",
            Self::FragmentedControl => "fragmented_control",
            Self::Unmasked => "unmasked",
            Self::UnexpectedContinuation => "unexpected_continuation",
            Self::ExpectedContinuation => "expected_continuation",
            Self::InvalidClose => "invalid_close",
            Self::InvalidCloseReason => "invalid_close_reason",
            Self::InvalidText => "invalid_text",
            Self::TooLarge { .. } => "too_large",
        }
    }
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ReservedBits => f.write_str("reserved header bits set"),
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::LengthTooLarge => f.write_str("64-bit payload length with the top bit set"),
            Self::ControlTooLong => f.write_str("control frame payload over 125 bytes"),
            Self::FragmentedControl => f.write_str("fragmented control frame"),
            Self::Unmasked => f.write_str("unmasked frame from a client"),
            Self::UnexpectedContinuation => {
                f.write_str("continuation frame with no message in progress")
            }
            Self::ExpectedContinuation => {
                f.write_str("new message while a fragmented message is in progress")
            }
            Self::InvalidClose => f.write_str("invalid close frame payload or status code"),
            Self::InvalidCloseReason => f.write_str("close reason is not UTF-8"),
            Self::InvalidText => f.write_str("text message is not UTF-8"),
            Self::TooLarge { len, max } => {
                write!(f, "message of {len} bytes over the cap of {max}")
            }
        }
    }
}

impl core::error::Error for ProtocolError {}

/// Close status codes (RFC 6455 section 7.4.1).
pub mod close_code {
    /// The purpose of the connection is fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Payload data inconsistent with its type (text that is not UTF-8).
    pub const INVALID_DATA: u16 = 1007;
    /// A message that violates the endpoint's policy.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// An unexpected condition on the server.
    pub const INTERNAL_ERROR: u16 = 1011;

    /// True for a code a peer may send in a close frame: 1000-1003, 1007-1014 and the
    /// registered and private ranges 3000-4999.
    pub const fn is_sendable(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Parses a frame header from the first bytes of `bytes` (the bytes received so far;
/// anything after the header is ignored). Checks what the header alone can tell: the
/// reserved bits and opcodes, the 64-bit length's top bit, and the control-frame rules
/// (FIN set, at most 125 bytes). Whether the frame must be masked, its size cap and the
/// fragmentation order are the reader's checks. Accepts lengths not encoded in the
/// fewest bytes (senders must use the fewest; accepting more costs nothing).
pub fn parse_header(bytes: &[u8]) -> Result<Parse, ProtocolError> {
    let (&b0, &b1) = match bytes {
        [b0, b1, ..] => (b0, b1),
        _ => {
            return Ok(Parse::Incomplete {
                needed: 2 - bytes.len(),
            });
        }
    };
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
    let fin = if b0 & 0x80 != 0 {
        Fin::Final
    } else {
        Fin::More
    };
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if fin == Fin::More {
            return Err(ProtocolError::FragmentedControl);
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlTooLong);
        }
    }
    let len_bytes = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let total = 2 + len_bytes + if masked { 4 } else { 0 };
    if bytes.len() < total {
        return Ok(Parse::Incomplete {
            needed: total - bytes.len(),
        });
    }
    let payload_len = match len_bytes {
        2 => u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        8 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(&bytes[2..10]);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(ProtocolError::LengthTooLarge);
            }
            len
        }
        _ => u64::from(len7),
    };
    let mask = if masked {
        let at = 2 + len_bytes;
        Some([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    } else {
        None
    };
    Ok(Parse::Complete {
        header: FrameHeader {
            fin,
            opcode,
            mask,
            payload_len,
        },
        len: total,
    })
}

/// Writes the header of an unmasked (server) frame into `out`; returns its length
/// (2, 4 or 10 bytes), the lengths encoded in the fewest bytes.
pub fn write_header(fin: Fin, opcode: Opcode, payload_len: u64, out: &mut [u8; 10]) -> usize {
    out[0] = opcode.bits() | if fin == Fin::Final { 0x80 } else { 0 };
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (FrameHeader, usize) {
        match parse_header(bytes) {
            Ok(Parse::Complete { header, len }) => (header, len),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lengths_of_7_16_and_64_bits() {
        let (h, len) = complete(&[0x81, 0x85, 1, 2, 3, 4]);
        assert_eq!(
            (h.opcode, h.fin, h.payload_len, h.mask, len),
            (Opcode::Text, Fin::Final, 5, Some([1, 2, 3, 4]), 6)
        );
        let (h, len) = complete(&[0x02, 0xFE, 0x01, 0x00, 9, 9, 9, 9]);
        assert_eq!(
            (h.opcode, h.fin, h.payload_len, len),
            (Opcode::Binary, Fin::More, 256, 8)
        );
        let (h, len) = complete(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, h.mask, len), (65536, None, 10));
    }

    #[test]
    fn incomplete_asks_for_no_more_than_the_header() {
        assert_eq!(parse_header(&[]), Ok(Parse::Incomplete { needed: 2 }));
        assert_eq!(parse_header(&[0x81]), Ok(Parse::Incomplete { needed: 1 }));
        assert_eq!(
            parse_header(&[0x81, 0xFF]),
            Ok(Parse::Incomplete { needed: 12 })
        );
        assert_eq!(
            parse_header(&[0x81, 0xFE, 0]),
            Ok(Parse::Incomplete { needed: 5 })
        );
    }

    #[test]
    fn header_rules() {
        assert_eq!(
            parse_header(&[0xC1, 0x80]),
            Err(ProtocolError::ReservedBits)
        );
        assert_eq!(
            parse_header(&[0x83, 0x80]),
            Err(ProtocolError::ReservedOpcode(3))
        );
        assert_eq!(
            parse_header(&[0x09, 0x80]),
            Err(ProtocolError::FragmentedControl)
        );
        assert_eq!(
            parse_header(&[0x89, 0xFE]),
            Err(ProtocolError::ControlTooLong)
        );
        assert_eq!(
            parse_header(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthTooLarge)
        );
    }

    #[test]
    fn written_headers_parse_back() {
        for len in [0u64, 125, 126, 65535, 65536, u64::MAX >> 1] {
            let mut out = [0u8; 10];
            let n = write_header(Fin::Final, Opcode::Binary, len, &mut out);
            let (h, parsed) = complete(&out[..n]);
            assert_eq!((h.payload_len, h.mask, parsed), (len, None, n));
        }
    }
}
