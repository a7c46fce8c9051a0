//! How the CLI prints results: `--output text` (aligned tables, values one per line) or
//! `--output json` (one JSON document per command on stdout; streams such as `fjord consume`
//! print one JSON object per line). Errors always go to stderr as one line, whatever the format.

use std::io::Write;

use anyhow::{Context, Result};

/// The `--output` choice shared by every client subcommand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable tables and lines
    #[default]
    Text,
    /// Machine-readable JSON on stdout
    Json,
}

/// Prints `value` as one JSON document followed by a newline.
pub fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value).context("cannot write JSON to stdout")?;
    writeln!(stdout).context("cannot write to stdout")?;
    Ok(())
}
