//! The reaper on real embassy-net stacks in the simulated network: each deadline
//! ([`deadlines`]) and a slowloris attack ([`slowloris`]). One test binary: its modules
//! share [`common`].
mod common;

mod deadlines;
mod slowloris;
mod stream;
