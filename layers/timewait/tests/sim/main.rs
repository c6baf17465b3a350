//! The layer on real embassy-net stacks in the simulated network: how the server's
//! close gives the slot back ([`close`]), what a drop without `end` does ([`drop`]) and
//! the sweeper ([`sweep`]). One test binary: its modules share [`common`].
mod common;

mod close;
mod drop;
mod sweep;
