//! What the CLI prints: aligned tables and `key  value` lines for people, the node's own JSON
//! for scripts (`--json`).

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::client::{Failure, Probe};
use crate::sse;

/// Prints answers in the chosen form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Output { json }
    }

    /// `GET /api/services`: one row per service.
    pub(crate) fn services(&self, services: &Value) -> Result<(), Failure> {
        if self.json {
            return print_json(services);
        }
        let list = services
            .as_array()
            .ok_or_else(|| Failure::Protocol(format!("not a list of services: {services}")))?;
        let rows = list
            .iter()
            .map(|s| {
                vec![
                    text(&s["name"]),
                    text(&s["kinds"]),
                    text(&s["state"]),
                    health(&s["health"]),
                ]
            })
            .collect();
        print(&table(&["NAME", "KINDS", "STATE", "HEALTH"], rows));
        Ok(())
    }

    /// A list's items, for a table; `None` once it is printed as JSON instead.
    fn items<'a>(&self, list: &'a Value, what: &str) -> Result<Option<&'a [Value]>, Failure> {
        if self.json {
            print_json(list)?;
            return Ok(None);
        }
        let items = list
            .as_array()
            .ok_or_else(|| Failure::Protocol(format!("not a list of {what}: {list}")))?;
        Ok(Some(items))
    }

    /// `GET /api/jobs`: one row per job, then how to get the next page.
    pub(crate) fn jobs(&self, page: &Value) -> Result<(), Failure> {
        if self.json {
            return print_json(page);
        }
        let Some(list) = self.items(&page["jobs"], "jobs")? else {
            return Ok(());
        };
        let rows = list
            .iter()
            .map(|j| {
                let attempts = match (j["attempt"].as_u64(), j["attempts"].as_u64()) {
                    (Some(n), _) | (None, Some(n)) => n.to_string(),
                    _ => j["errors"].as_array().map_or(0, Vec::len).to_string(),
                };
                vec![
                    text(&j["id"]),
                    text(&j["service"]),
                    text(&j["action"]),
                    text(&j["state"]),
                    format!("{attempts}/{}", text(&j["maxAttempts"])),
                    as_time(&j["created"]).unwrap_or_else(|| "-".into()),
                    j["errors"]
                        .as_array()
                        .and_then(|e| e.last())
                        .map_or_else(|| "-".into(), |e| text(&e["error"])),
                ]
            })
            .collect();
        print(&table(
            &[
                "ID",
                "SERVICE",
                "ACTION",
                "STATE",
                "ATTEMPTS",
                "CREATED",
                "LAST ERROR",
            ],
            rows,
        ));
        if let Some(next) = page["next"].as_str() {
            println!("more: the same with --after {next}");
        }
        Ok(())
    }

    /// `GET /api/services/{name}/runs`: one row per run, newest first.
    pub(crate) fn runs(&self, runs: &Value) -> Result<(), Failure> {
        let Some(list) = self.items(runs, "runs")? else {
            return Ok(());
        };
        let rows = list
            .iter()
            .map(|r| {
                let job = match (r["job"].as_str(), r["attempt"].as_u64()) {
                    (Some(job), Some(attempt)) => format!("{job} #{attempt}"),
                    _ => "-".into(),
                };
                vec![
                    as_time(&r["started_at"]).unwrap_or_else(|| "-".into()),
                    text(&r["kind"]),
                    text(&r["name"]),
                    text(&r["duration"]),
                    text(&r["outcome"]),
                    job,
                    text(&r["correlation_id"]),
                    text(&r["error"]),
                ]
            })
            .collect();
        print(&table(
            &[
                "STARTED",
                "KIND",
                "NAME",
                "TOOK",
                "OUTCOME",
                "JOB",
                "CORRELATION",
                "ERROR",
            ],
            rows,
        ));
        Ok(())
    }

    /// `GET /api/services/{name}/state`: one row per key, then how to get the next page.
    pub(crate) fn state(&self, name: &str, page: &Value) -> Result<(), Failure> {
        if self.json {
            return print_json(page);
        }
        let entries = page["entries"]
            .as_array()
            .ok_or_else(|| Failure::Protocol(format!("not a page of state: {page}")))?;
        let rows = entries
            .iter()
            .map(|e| {
                let mut value = e["value"].to_string();
                if value.chars().count() > VALUE_SHOWN {
                    value = value.chars().take(VALUE_SHOWN).collect::<String>() + "…";
                }
                vec![
                    shown_key(e["key"].as_str().unwrap_or_default()),
                    text(&e["version"]),
                    as_time(&e["written"]).unwrap_or_else(|| "-".into()),
                    value,
                ]
            })
            .collect();
        print(&table(&["KEY", "VERSION", "WRITTEN", "VALUE"], rows));
        if let Some(next) = page["next"].as_str() {
            if next.chars().any(char::is_control) {
                // No line of a terminal carries it: the JSON does.
                println!(
                    "more: after {}; `--json` gives it as `next`",
                    shown_key(next)
                );
            } else {
                let (name, next) = (shell_word(name), shell_word(next));
                // `--after=` so that a key that starts with a dash stays a value.
                println!("more: sora state {name} --after={next}");
            }
        }
        Ok(())
    }

    /// `GET /api/services/{name}/state/{key}`: the value whole, as indented JSON.
    pub(crate) fn state_entry(&self, entry: &Value) -> Result<(), Failure> {
        if self.json {
            return print_json(entry);
        }
        let written = as_time(&entry["written"]).unwrap_or_else(|| "-".into());
        println!(
            "key      {}",
            shown_key(entry["key"].as_str().unwrap_or_default())
        );
        println!("version  {}", text(&entry["version"]));
        println!("written  {written}");
        let value = serde_json::to_string_pretty(&entry["value"])
            .map_err(|e| Failure::Protocol(e.to_string()))?;
        println!("value    {}", value.replace('\n', "\n         "));
        Ok(())
    }

    /// `GET /api/services/{name}/status`.
    pub(crate) fn status(&self, status: &Value) -> Result<(), Failure> {
        self.fields(status)
    }

    /// `GET /api/services/{name}`.
    pub(crate) fn info(&self, info: &Value) -> Result<(), Failure> {
        self.fields(info)
    }

    fn fields(&self, value: &Value) -> Result<(), Failure> {
        if self.json {
            return print_json(value);
        }
        let mut rows = Vec::new();
        flatten("", value, &mut rows);
        let rows = rows.into_iter().map(|(k, v)| vec![k, v]).collect();
        print(&table(&[], rows));
        Ok(())
    }

    /// A command that answers nothing went through.
    pub(crate) fn done(&self, service: &str, what: &str) {
        if self.json {
            println!("{}", serde_json::json!({ "service": service, "ok": true }));
        } else {
            println!("{service}: {what}");
        }
    }

    /// An action's reply: compact for scripts, indented for people.
    pub(crate) fn reply(&self, reply: &Value) -> Result<(), Failure> {
        if self.json {
            return print_json(reply);
        }
        let pretty = serde_json::to_string_pretty(reply)
            .map_err(|e| Failure::Protocol(format!("unprintable reply: {e}")))?;
        println!("{pretty}");
        Ok(())
    }

    /// A health probe's answer.
    pub(crate) fn health(&self, probe: Probe, report: &Value) {
        if self.json {
            println!("{report}");
            return;
        }
        let overall = report["status"]
            .as_str()
            .or_else(|| report["message"].as_str())
            .unwrap_or("unknown");
        println!("{overall}");
        if probe == Probe::Health {
            let rows = report["services"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| vec![text(&s["name"]), health(s)])
                .collect();
            print(&table(&["SERVICE", "HEALTH"], rows));
        }
    }

    /// One event of the live stream: its data line as is for scripts (one JSON per line), a
    /// line with its id, service, name, correlation id and payload for people. Gaps go to
    /// standard error.
    pub(crate) fn event(&self, event: &sse::Event) -> Result<(), Failure> {
        if event.event.as_deref() == Some("gap") {
            eprintln!("sora: events were missed: {}", event.data);
            return Ok(());
        }
        if self.json {
            println!("{}", event.data);
        } else {
            let data: Value = serde_json::from_str(&event.data)
                .map_err(|e| Failure::Protocol(format!("an event is not JSON ({e})")))?;
            let correlation = match data["correlationId"].as_str() {
                Some(id) => format!(" [{id}]"),
                None => String::new(),
            };
            println!(
                "#{} {} {}{} {}",
                text(&data["id"]),
                text(&data["service"]),
                text(&data["event"]),
                correlation,
                data["payload"]
            );
        }
        // A follower piped into another program must not sit in a buffer.
        std::io::stdout().flush().ok();
        Ok(())
    }
}

fn print_json(value: &Value) -> Result<(), Failure> {
    println!("{value}");
    Ok(())
}

fn print(text: &str) {
    print!("{text}");
}

/// A health value: `healthy`, or `degraded: reason`.
fn health(value: &Value) -> String {
    match (value["status"].as_str(), value["reason"].as_str()) {
        (Some(status), Some(reason)) => format!("{status}: {reason}"),
        (Some(status), None) => status.to_owned(),
        _ => text(value),
    }
}

/// A value as one cell: strings bare, lists joined, nothing as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => match as_duration(other) {
            Some(d) => humantime::format_duration(d).to_string(),
            None => other.to_string(),
        },
    }
}

/// Serde's form of a `Duration`: `{"secs": .., "nanos": ..}`.
fn as_duration(value: &Value) -> Option<Duration> {
    let object = value.as_object()?;
    if object.len() != 2 {
        return None;
    }
    let secs = object.get("secs")?.as_u64()?;
    let nanos = u32::try_from(object.get("nanos")?.as_u64()?).ok()?;
    // Whole milliseconds are what people read.
    Some(Duration::new(secs, nanos - nanos % 1_000_000))
}

/// Serde's form of a `SystemTime`, as RFC 3339.
fn as_time(value: &Value) -> Option<String> {
    let object = value.as_object()?;
    let secs = object.get("secs_since_epoch")?.as_u64()?;
    let time = UNIX_EPOCH + Duration::from_secs(secs);
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

/// `key  value` rows of an object, nested keys joined with dots.
fn flatten(prefix: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    let nested = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        Value::Object(object) if as_duration(value).is_none() && as_time(value).is_none() => {
            for (key, value) in object {
                flatten(&nested(key), value, rows);
            }
        }
        other => {
            let cell = as_time(other).unwrap_or_else(|| text(other));
            rows.push((prefix.to_owned(), cell));
        }
    }
}

/// How much of a state value a row shows; `sora state NAME KEY` shows all of it.
const VALUE_SHOWN: usize = 60;

/// A key for a table's cell: as it is, unless it holds characters that would break the row
/// (a newline, a tab, a control character), then quoted with those escaped.
fn shown_key(key: &str) -> String {
    if key.chars().any(char::is_control) {
        format!("{key:?}")
    } else {
        key.to_owned()
    }
}

/// A word for a shell: as it is when it needs no quoting, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && !word.starts_with('-')
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Left-aligned columns, two spaces apart; no header row when `headers` is empty.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut all: Vec<Vec<String>> = Vec::new();
    if !headers.is_empty() {
        all.push(headers.iter().map(|h| (*h).to_owned()).collect());
    }
    all.extend(rows);
    let columns = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            all.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in all {
        let last = row.len().saturating_sub(1);
        for (c, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if c < last {
                let pad = widths[c] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["cleanup".into(), "idle".into()],
            vec!["translator".into(), "busy".into()],
        ];
        assert_eq!(
            table(&["NAME", "STATE"], rows),
            "NAME        STATE\ncleanup     idle\ntranslator  busy\n"
        );
    }

    #[test]
    fn objects_flatten_and_times_read_as_people_write_them() {
        let status = json!({
            "name": "cleanup",
            "next_run_in": {"secs": 90, "nanos": 500_000_123},
            "last_run": {"started_at": {"secs_since_epoch": 0, "nanos_since_epoch": 0}, "error": null},
            "events": [],
        });
        let mut rows = Vec::new();
        flatten("", &status, &mut rows);
        let rows: std::collections::HashMap<_, _> = rows.into_iter().collect();
        assert_eq!(rows["name"], "cleanup");
        assert_eq!(rows["next_run_in"], "1m 30s 500ms");
        assert_eq!(rows["last_run.started_at"], "1970-01-01T00:00:00Z");
        assert_eq!(rows["last_run.error"], "-");
        assert_eq!(rows["events"], "-");
    }
}
