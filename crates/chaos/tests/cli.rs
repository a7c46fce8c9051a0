//! `fjord-chaos-check` exit codes and outputs: 0 valid, 1 anomalies, 2 bad input.

use std::io::Write;
use std::process::{Command, Stdio};

const HEAD: &str = r#"{"i":0,"t_ns":0,"process":"p","type":"info","f":"process","value":{"role":"producer"}}
{"i":1,"t_ns":1,"process":"p","type":"invoke","f":"send","value":["t",0,null,"p-0"]}
{"i":2,"t_ns":2,"process":"p","type":"ok","f":"send","value":["t",0,0,"p-0"]}
"#;

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fjord-chaos-check"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn drain(records: &str) -> String {
    format!(
        r#"{{"i":3,"t_ns":3,"process":"drain","type":"ok","f":"drain","value":{{"isolation":"read_uncommitted","records":[{records}]}}}}"#
    )
}

#[test]
fn valid_history_exits_0() {
    let (code, out, _) = run(&["-"], &format!("{HEAD}{}\n", drain(r#"["t",0,0,"p-0"]"#)));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("history: VALID"), "{out}");
}

#[test]
fn anomalies_exit_1_and_json_names_them() {
    let dir = std::env::temp_dir().join(format!("fjord-chaos-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_out = dir.join("check.json");
    let history = format!("{HEAD}{}\n", drain(""));
    let (code, out, _) = run(&["--json-out", json_out.to_str().unwrap(), "-"], &history);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID") && out.contains("lost"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["anomalies"]["lost"]["count"], 1);
    assert_eq!(report["anomalies"]["lost"]["examples"][0]["value"], "p-0");
    let (code, out, _) = run(&["--json", "-"], &history);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["anomalies"]["lost"]["count"], 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_exits_2() {
    let (code, _, err) = run(&["-"], HEAD);
    assert_eq!(code, 2);
    assert!(err.contains("no drain"), "{err}");
    let (code, _, err) = run(&["-"], "{\"i\":0}\n");
    assert_eq!(code, 2);
    assert!(err.contains("line 1"), "{err}");
    let (code, _, _) = run(&["/nonexistent/history.jsonl"], "");
    assert_eq!(code, 2);
    let (code, out, _) = run(&["--allow-missing-drain", "-"], HEAD);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NO DRAIN"), "{out}");
}
