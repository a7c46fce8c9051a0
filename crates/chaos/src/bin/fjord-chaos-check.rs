//! `fjord-chaos-check`: checks a chaos history (JSON lines, schema in the `fjord_chaos` crate
//! docs) and prints a human summary or, with `--json`, the full report.
//!
//! Exit codes: 0 the history is valid, 1 anomalies were found, 2 bad input (unreadable file,
//! malformed or inconsistent events, no drain).

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fjord_chaos::{check_reader, CheckOptions};

#[derive(Parser, Debug)]
#[command(
    name = "fjord-chaos-check",
    about = "Check a Fjord chaos history (JSON lines)"
)]
struct Args {
    /// History file (`-` for standard input).
    history: PathBuf,
    /// Print the report as JSON instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file (the summary still goes to standard output).
    #[arg(long, value_name = "PATH")]
    json_out: Option<PathBuf>,
    /// Examples kept per anomaly kind (counts are always exact).
    #[arg(long, default_value_t = 20)]
    examples_max: usize,
    /// Accept a history without a drain (loss and atomicity are then not checked).
    #[arg(long)]
    allow_missing_drain: bool,
}

const READ_BUFFER_BYTES: usize = 1 << 20;

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = CheckOptions {
        allow_missing_drain: args.allow_missing_drain,
        examples_max: args.examples_max,
    };
    let result = if args.history.as_os_str() == "-" {
        check_reader(
            BufReader::with_capacity(READ_BUFFER_BYTES, io::stdin().lock()),
            &opts,
        )
    } else {
        match File::open(&args.history) {
            Ok(f) => check_reader(BufReader::with_capacity(READ_BUFFER_BYTES, f), &opts),
            Err(e) => {
                eprintln!("error: cannot open {}: {e}", args.history.display());
                return ExitCode::from(2);
            }
        }
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {e}", args.history.display());
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.json_out {
        let written = serde_json::to_string_pretty(&report)
            .map_err(io::Error::other)
            .and_then(|s| std::fs::write(path, s + "\n"));
        if let Err(e) = written {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("error: cannot serialise the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        report.summary()
    };
    // A closed stdout (e.g. `| head`) must not turn a verdict into a panic.
    let _ = io::stdout().lock().write_all(text.as_bytes());
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
