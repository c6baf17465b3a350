//! The packet trace: one line per IPv4/TCP packet the link carried or dropped.
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use embassy_time::Instant;

/// The TCP flags of a packet (the low byte of the TCP header's flag field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN: the sender has no more data.
    pub const FIN: u8 = 0x01;
    /// SYN: opens a connection.
    pub const SYN: u8 = 0x02;
    /// RST: resets a connection.
    pub const RST: u8 = 0x04;
    /// PSH: push the data to the application.
    pub const PSH: u8 = 0x08;
    /// ACK: the acknowledgment number is valid.
    pub const ACK: u8 = 0x10;

    /// True if FIN is set.
    pub const fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// True if SYN is set.
    pub const fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// True if RST is set.
    pub const fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// True if PSH is set.
    pub const fn psh(self) -> bool {
        self.0 & Self::PSH != 0
    }
    /// True if ACK is set.
    pub const fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

impl fmt::Display for TcpFlags {
    /// tcpdump's notation: `S` SYN, `F` FIN, `R` RST, `P` PSH, `.` ACK.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        if self.syn() {
            s.push('S');
        }
        if self.fin() {
            s.push('F');
        }
        if self.rst() {
            s.push('R');
        }
        if self.psh() {
            s.push('P');
        }
        if self.ack() {
            s.push('.');
        }
        if s.is_empty() {
            s.push('-');
        }
        f.pad(&s)
    }
}

/// What the link did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered to the destination host at this virtual time.
    Delivered(Instant),
    /// Dropped by the link's random loss.
    Lost,
    /// Dropped because its source or destination vanished ([`Net::vanish`](crate::Net::vanish)).
    Vanished,
    /// Dropped: no host has the destination address.
    NoRoute,
}

impl Fate {
    /// True unless the packet was delivered.
    pub const fn dropped(self) -> bool {
        !matches!(self, Fate::Delivered(_))
    }
}

/// One packet as the link saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracePacket {
    /// Virtual time the sender handed it to the link.
    pub at: Instant,
    /// Source address and port (port 0 for a non-TCP packet).
    pub src: SocketAddrV4,
    /// Destination address and port (port 0 for a non-TCP packet).
    pub dst: SocketAddrV4,
    /// TCP flags (empty for a non-TCP packet).
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Advertised receive window (unscaled).
    pub window: u16,
    /// TCP payload length in bytes.
    pub len: usize,
    /// IP packet length in bytes (what the link serialized).
    pub wire_len: usize,
    /// What the link did with it.
    pub fate: Fate,
}

impl fmt::Display for TracePacket {
    /// `  12.345678 10.0.0.2:49152 > 10.0.0.1:80 [S   ] seq 1 ack 0 win 1024 len 0`
    /// (time in seconds), followed by the fate when the packet was dropped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.at.as_micros();
        write!(
            f,
            "{:>5}.{:06} {:>21} > {:<21} [{:<4}] seq {} ack {} win {} len {}",
            us / 1_000_000,
            us % 1_000_000,
            self.src.to_string(),
            self.dst.to_string(),
            self.flags,
            self.seq,
            self.ack,
            self.window,
            self.len
        )?;
        match self.fate {
            Fate::Delivered(_) => Ok(()),
            Fate::Lost => f.write_str("  (lost)"),
            Fate::Vanished => f.write_str("  (vanished)"),
            Fate::NoRoute => f.write_str("  (no route)"),
        }
    }
}

/// The fields of an IPv4 packet the link needs, read by hand from the headers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Parsed {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub len: usize,
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}
fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Parses an IPv4 packet; `None` when it is not IPv4 or is truncated.
pub(crate) fn parse(p: &[u8]) -> Option<Parsed> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(be16(p, 2)).min(p.len());
    let src_ip = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst_ip = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    const TCP: u8 = 6;
    if p[9] != TCP || total < ihl + 20 {
        return Some(Parsed {
            src: SocketAddrV4::new(src_ip, 0),
            dst: SocketAddrV4::new(dst_ip, 0),
            flags: TcpFlags(0),
            seq: 0,
            ack: 0,
            window: 0,
            len: total.saturating_sub(ihl),
        });
    }
    let t = &p[ihl..total];
    let doff = usize::from(t[12] >> 4) * 4;
    Some(Parsed {
        src: SocketAddrV4::new(src_ip, be16(t, 0)),
        dst: SocketAddrV4::new(dst_ip, be16(t, 2)),
        seq: be32(t, 4),
        ack: be32(t, 8),
        flags: TcpFlags(t[13]),
        window: be16(t, 14),
        len: t.len().saturating_sub(doff),
    })
}
