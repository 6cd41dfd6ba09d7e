//! `editfeed pack`: builds a servable dataset from Pico-Banana-400K or from existing
//! WebDataset shards.

use clap::Subcommand;

/// What to pack from.
#[derive(Debug, Subcommand)]
pub enum PackCommand {}

/// Runs `editfeed pack`.
pub fn run(cmd: PackCommand) -> anyhow::Result<()> {
    match cmd {}
}
