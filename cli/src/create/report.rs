//! The machine-readable outcome of `ksplice-create --json`: one JSON
//! object on stdout saying what happened, so a script can tell a created
//! update from a refusal, a fix with nothing to apply, and a failure.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::Analysis;
use crate::{Error, ExitStatus};

/// What became of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// `update.ko` was written.
    Created,
    /// The patch cannot be turned into an update safely (exit 5).
    Refused,
    /// Nothing to apply: the running kernel's code is already equivalent
    /// (exit 7).
    Noop,
    /// Something went wrong: bad input, a compile or link failure, ...
    Failed,
}

/// A function of an object file.
#[derive(Clone, Debug, Serialize)]
pub struct Function {
    /// The object, e.g. `kernel/exit.o`.
    pub object: String,
    /// The function.
    pub function: String,
}

/// Seconds spent per step.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Seconds {
    /// Preprocessing pre and post (header changes).
    pub preprocess: f64,
    /// Compiling pre and post.
    pub compile: f64,
    /// Comparing the objects.
    pub compare: f64,
    /// Writing post.o and linking update.ko.
    pub link: f64,
    /// Everything.
    pub total: f64,
}

/// The report `--json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What happened.
    pub outcome: Outcome,
    /// The process exit code.
    pub exit_code: u8,
    /// Why, unless created: the error message.
    pub reason: Option<String>,
    /// A stable name for the reason (`data_change`, `module`, ...).
    pub reason_kind: Option<&'static str>,
    /// The update id.
    pub id: String,
    /// The update written, if created.
    pub output: Option<PathBuf>,
    /// Functions replaced.
    pub replaced: Vec<Function>,
    /// Functions added.
    pub added: Vec<Function>,
    /// Objects the patch affects (changed sources, includers of changed
    /// headers).
    pub objects_affected: Vec<String>,
    /// The affected objects that were compiled (their preprocessed source
    /// differs).
    pub objects_compiled: Vec<String>,
    /// Notes (skipped init code, objects outside vmlinux, ...).
    pub notes: Vec<String>,
    /// Where the time went.
    pub seconds: Seconds,
}

impl Report {
    /// An empty report for update `id`.
    pub fn new(id: &str) -> Self {
        Self {
            outcome: Outcome::Failed,
            exit_code: ExitStatus::Failure as u8,
            reason: None,
            reason_kind: None,
            id: id.to_owned(),
            output: None,
            replaced: Vec::new(),
            added: Vec::new(),
            objects_affected: Vec::new(),
            objects_compiled: Vec::new(),
            notes: Vec::new(),
            seconds: Seconds::default(),
        }
    }

    /// Records what the analysis found.
    pub fn analysed(&mut self, analysis: &Analysis) {
        self.objects_affected = analysis.rebuilt.keys().cloned().collect();
        self.objects_compiled = analysis.compiled.iter().cloned().collect();
        self.notes = analysis.notes.clone();
        let t = analysis.timings;
        self.seconds.preprocess = t.preprocess.as_secs_f64();
        self.seconds.compile = t.compile.as_secs_f64();
        self.seconds.compare = t.compare.as_secs_f64();
    }

    /// Records the functions of the update.
    pub fn functions(&mut self, replaced: &[(String, String)], added: &[(String, String)]) {
        let list = |pairs: &[(String, String)]| {
            pairs
                .iter()
                .map(|(object, function)| Function {
                    object: object.clone(),
                    function: function.clone(),
                })
                .collect()
        };
        self.replaced = list(replaced);
        self.added = list(added);
    }

    /// Sets the outcome from how the tool ended, and the total time.
    pub fn finish(&mut self, result: &Result<ExitStatus, Error>, link: Duration, total: Duration) {
        self.seconds.link = link.as_secs_f64();
        self.seconds.total = total.as_secs_f64();
        let status = match result {
            Ok(status) => *status,
            Err(e) => e.exit_status(),
        };
        self.exit_code = status as u8;
        self.outcome = match status {
            ExitStatus::Success => Outcome::Created,
            ExitStatus::Refused => Outcome::Refused,
            ExitStatus::NothingToApply => Outcome::Noop,
            _ => Outcome::Failed,
        };
        if let Err(e) = result {
            self.reason = Some(e.to_string());
            self.reason_kind = Some(match e {
                Error::Create(c) => c.kind(),
                _ => "error",
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::CreateError;
    use super::*;

    /// How a run ended, and the outcome, exit code and reason kind it reports.
    type Case = (Result<ExitStatus, Error>, Outcome, u8, Option<&'static str>);

    #[test]
    fn each_ending_maps_to_its_outcome_and_exit_code() {
        let cases: [Case; 4] = [
            (Ok(ExitStatus::Success), Outcome::Created, 0, None),
            (
                Err(CreateError::NoChanges.into()),
                Outcome::Noop,
                7,
                Some("no_changes"),
            ),
            (
                Err(CreateError::DataChange {
                    object: "kernel/sys.o".into(),
                    symbol: "overflowuid".into(),
                }
                .into()),
                Outcome::Refused,
                5,
                Some("data_change"),
            ),
            (
                Err(CreateError::CompileFailed {
                    object: "kernel/sys.o".into(),
                    variant: "post",
                    log: "error".into(),
                }
                .into()),
                Outcome::Failed,
                6,
                Some("compile_failed"),
            ),
        ];
        for (result, outcome, code, kind) in cases {
            let mut r = Report::new("x");
            r.finish(&result, Duration::ZERO, Duration::from_millis(1500));
            assert_eq!(
                (r.outcome, r.exit_code, r.reason_kind),
                (outcome, code, kind)
            );
            assert_eq!(r.reason.is_some(), result.is_err());
            let json = serde_json::to_value(&r).unwrap();
            assert_eq!(json["seconds"]["total"], 1.5);
        }
        let mut r = Report::new("x");
        r.finish(
            &Err(CreateError::NoChanges.into()),
            Duration::ZERO,
            Duration::ZERO,
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["outcome"], "noop");
        assert!(json["reason"]
            .as_str()
            .unwrap()
            .starts_with("nothing to apply: the running kernel's code is already equivalent"));
    }
}
