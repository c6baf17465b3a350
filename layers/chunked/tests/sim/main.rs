//! The layer on real embassy-net stacks in the simulated network: the pieces that reach
//! the socket ([`pieces`]), another connection's turn between them ([`interleave`]),
//! the coalescing buffer under Nagle ([`coalesce`]) and the progress of a cancelled
//! response ([`progress`]). One test binary: its modules share [`simnet`].
mod simnet;

mod coalesce;
mod interleave;
mod pieces;
mod progress;
