//! How the CLI prints results: `--output text` (aligned tables, values one per line) or
//! `--output json` (one JSON document per command on stdout; streams such as `fjord consume`
//! print one JSON object per line). Errors always go to stderr as one line, whatever the format.
//!
//! JSON documents use snake_case keys, numbers as numbers and `null` for an absent value
//! (where the text tables print `-`).

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::Value;

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

/// Prints an aligned text table: the headers, then one line per row, columns two spaces apart
/// and trailing blanks trimmed (the text format the integration tests parse).
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A string that may be empty as JSON: `null` when empty.
pub fn non_empty(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        Value::from(text)
    }
}

/// An offset, epoch or time where negative means "none" as JSON: `null` when negative.
pub fn non_negative(value: i64) -> Value {
    if value >= 0 {
        Value::from(value)
    } else {
        Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_values_are_null() {
        assert_eq!(non_empty(""), Value::Null);
        assert_eq!(non_empty("x"), Value::from("x"));
        assert_eq!(non_negative(-1), Value::Null);
        assert_eq!(non_negative(0), Value::from(0));
    }
}
