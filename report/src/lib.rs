//! The read side for people: rank trials (`rank`: table, markdown, csv, json,
//! groups with confidence intervals), one trial in depth (`show`), charts
//! (`plot`: PNG/SVG) and the self-contained HTML report (`html`); `program`
//! reads a user program's metrics (`[program]` sweeps) for all of them. Read-only;
//! fed by the store's queries. Must never import the spec's parser, the
//! coordinator or anything that trains.
// One diagnostic channel: `sweep_protocol::log!`, which never panics on a
// closed stderr (`eprintln!` does).
#![deny(clippy::print_stderr)]
pub mod html;
pub mod plot;
pub mod program;
pub mod rank;
pub mod show;
