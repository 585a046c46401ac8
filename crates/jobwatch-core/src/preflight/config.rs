//! The preflight configuration: a TOML file parsed strictly (unknown keys,
//! unknown kinds, fields of another kind, duplicate names are errors) into
//! checks that are ready to run. Every error names the file, line and column.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The file `preflight` reads when none is named.
pub const DEFAULT_FILE: &str = "jobwatch.toml";
/// A check's time limit unless `[defaults]` or the check says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// A fix's time limit unless `[defaults]` or the check says otherwise.
pub const DEFAULT_FIX_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest check name, so a report line stays short.
pub const MAX_NAME: usize = 64;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The file could not be read (missing, unreadable); a missing one is
    /// told what to do about it.
    #[error(
        "cannot read preflight config {}: {source}{}",
        path.display(),
        if source.kind() == std::io::ErrorKind::NotFound {
            "; create it, or name another file"
        } else {
            ""
        }
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or not a valid configuration.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What is wrong, on one line.
        message: String,
    },
}

/// What a check probes; also its `kind` in the file and the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A command exits 0.
    Command,
    /// A TCP endpoint accepts a connection.
    Tcp,
    /// An HTTP(S) GET answers 2xx.
    Http,
    /// A path exists (and is executable, or a directory, if asked).
    Path,
}

impl Kind {
    /// The name used in the file and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Path => "path",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command to run: one string for `sh -c`, or an argv array run directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// Run with `sh -c`.
    Shell(String),
    /// Run directly: program and arguments.
    Argv(Vec<String>),
}

impl CommandLine {
    /// A `std::process::Command` for it.
    pub fn to_command(&self) -> std::process::Command {
        match self {
            CommandLine::Shell(s) => {
                let mut c = std::process::Command::new("sh");
                c.arg("-c").arg(s);
                c
            }
            CommandLine::Argv(argv) => {
                // An empty argv (only possible when built by hand) becomes a
                // command that fails to spawn, not a panic.
                let (program, args) = argv.split_first().map_or(("", &[][..]), |(p, a)| (p, a));
                let mut c = std::process::Command::new(program);
                c.args(args);
                c
            }
        }
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandLine::Shell(s) => f.write_str(s),
            CommandLine::Argv(argv) => f.write_str(&argv.join(" ")),
        }
    }
}

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CommandLine;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a shell command string or an array of strings (program and arguments)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CommandLine, E> {
                if s.trim().is_empty() {
                    return Err(E::custom("the command is empty"));
                }
                Ok(CommandLine::Shell(s.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CommandLine, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(de::Error::custom(
                        "the command array needs a program as its first element",
                    ));
                }
                Ok(CommandLine::Argv(argv))
            }
        }
        d.deserialize_any(V)
    }
}

/// What one check probes, with its kind's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The command exits 0 within the timeout.
    Command(CommandLine),
    /// `host:port` accepts a TCP connection within the timeout.
    Tcp {
        /// `host:port`; a host name is resolved, each address tried.
        address: String,
    },
    /// A GET of `url` answers 2xx within the timeout (redirects followed).
    Http {
        /// An `http://` or `https://` URL.
        url: String,
    },
    /// The path exists.
    Path {
        /// As written; a relative path is taken from the config's directory.
        path: PathBuf,
        /// It must be executable by this user (and not a directory unless
        /// `dir` is true).
        executable: bool,
        /// `Some(true)`: must be a directory; `Some(false)`: must not be.
        dir: Option<bool>,
    },
}

impl Probe {
    /// The kind of this probe.
    pub fn kind(&self) -> Kind {
        match self {
            Probe::Command(_) => Kind::Command,
            Probe::Tcp { .. } => Kind::Tcp,
            Probe::Http { .. } => Kind::Http,
            Probe::Path { .. } => Kind::Path,
        }
    }
}

/// A command run once when a check fails, before one re-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    /// What to run.
    pub command: CommandLine,
    /// How long it may run before its process group is killed.
    pub timeout: Duration,
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Unique, non-empty name.
    pub name: String,
    /// What it probes.
    pub probe: Probe,
    /// Time limit of one probe.
    pub timeout: Duration,
    /// What to run when it fails, if anything.
    pub fix: Option<Fix>,
}

/// A loaded configuration: checks in file order, and the directory that
/// relative paths and commands start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The checks, in the order of the file.
    pub checks: Vec<Check>,
    /// The config file's directory: commands run there and relative paths
    /// are taken from there, wherever `preflight` is started.
    pub base_dir: PathBuf,
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, PreflightError> {
        let text = std::fs::read_to_string(path).map_err(|source| PreflightError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Config::parse(&text, path, &base)
    }

    /// Parses configuration text; `origin` names it in errors and `base_dir`
    /// is where commands run and relative paths start.
    pub fn parse(text: &str, origin: &Path, base_dir: &Path) -> Result<Config, PreflightError> {
        let at = |span: Option<Range<usize>>, message: String| {
            let (line, column) = line_column(text, span.map_or(0, |s| s.start));
            PreflightError::Invalid {
                path: origin.to_owned(),
                line,
                column,
                message: one_line(&message),
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| at(e.span(), e.message().into()))?;
        if raw.check.is_empty() {
            return Err(at(
                Some(text.len()..text.len()),
                "no checks: add at least one [[check]] table".into(),
            ));
        }
        let defaults = Defaults {
            timeout: raw.defaults.timeout.unwrap_or(DEFAULT_TIMEOUT),
            fix_timeout: raw.defaults.fix_timeout.unwrap_or(DEFAULT_FIX_TIMEOUT),
        };
        let mut seen = HashSet::new();
        let mut checks = Vec::with_capacity(raw.check.len());
        for c in raw.check {
            let name_span = c.name.span();
            let check = c
                .validate(&defaults)
                .map_err(|Problem(span, msg)| at(Some(span), msg))?;
            if !seen.insert(check.name.clone()) {
                let msg = format!(
                    "duplicate check name {:?}: names must be unique",
                    check.name
                );
                return Err(at(Some(name_span), msg));
            }
            checks.push(check);
        }
        Ok(Config {
            checks,
            base_dir: base_dir.to_owned(),
        })
    }
}

/// A validation problem at a span of the source.
struct Problem(Range<usize>, String);

struct Defaults {
    timeout: Duration,
    fix_timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    check: Vec<RawCheck>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default, deserialize_with = "opt_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    fix_timeout: Option<Duration>,
}

/// One `[[check]]` table as written: every kind's fields are accepted here
/// and [`RawCheck::validate`] refuses those that do not belong to its kind,
/// which gives better errors than an internally tagged enum (and keeps
/// toml's positions).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: Spanned<String>,
    kind: Kind,
    #[serde(default, deserialize_with = "opt_duration")]
    timeout: Option<Duration>,
    fix: Option<CommandLine>,
    #[serde(default, deserialize_with = "opt_duration")]
    fix_timeout: Option<Duration>,
    command: Option<Spanned<CommandLine>>,
    address: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    path: Option<Spanned<PathBuf>>,
    executable: Option<Spanned<bool>>,
    dir: Option<Spanned<bool>>,
}

impl RawCheck {
    fn validate(self, defaults: &Defaults) -> Result<Check, Problem> {
        let name_span = self.name.span();
        let name = self.name.into_inner();
        validate_name(&name).map_err(|m| Problem(name_span.clone(), m))?;
        let kind = self.kind;
        let foreign = |field: &str, span: Range<usize>| {
            Problem(
                span,
                format!("check {name:?}: `{field}` is not a setting of a {kind} check"),
            )
        };
        let missing = |field: &str| {
            Problem(
                name_span.clone(),
                format!("check {name:?}: a {kind} check needs `{field}`"),
            )
        };
        // Every kind-specific field present, with the kind it belongs to.
        let given = [
            (
                "command",
                Kind::Command,
                self.command.as_ref().map(|s| s.span()),
            ),
            (
                "address",
                Kind::Tcp,
                self.address.as_ref().map(|s| s.span()),
            ),
            ("url", Kind::Http, self.url.as_ref().map(|s| s.span())),
            ("path", Kind::Path, self.path.as_ref().map(|s| s.span())),
            (
                "executable",
                Kind::Path,
                self.executable.as_ref().map(|s| s.span()),
            ),
            ("dir", Kind::Path, self.dir.as_ref().map(|s| s.span())),
        ];
        for (field, owner, span) in given {
            if let Some(span) = span
                && owner != kind
            {
                return Err(foreign(field, span));
            }
        }
        let probe = match kind {
            Kind::Command => {
                Probe::Command(self.command.ok_or_else(|| missing("command"))?.into_inner())
            }
            Kind::Tcp => {
                let address = self.address.ok_or_else(|| missing("address"))?;
                let span = address.span();
                let address = address.into_inner();
                validate_address(&address)
                    .map_err(|m| Problem(span, format!("check {name:?}: {m}")))?;
                Probe::Tcp { address }
            }
            Kind::Http => {
                let url = self.url.ok_or_else(|| missing("url"))?;
                let span = url.span();
                let url = url.into_inner();
                validate_url(&url).map_err(|m| Problem(span, format!("check {name:?}: {m}")))?;
                Probe::Http { url }
            }
            Kind::Path => {
                let path = self.path.ok_or_else(|| missing("path"))?;
                if path.get_ref().as_os_str().is_empty() {
                    return Err(Problem(
                        path.span(),
                        format!("check {name:?}: the path is empty"),
                    ));
                }
                Probe::Path {
                    path: path.into_inner(),
                    executable: self.executable.is_some_and(|e| e.into_inner()),
                    dir: self.dir.map(Spanned::into_inner),
                }
            }
        };
        Ok(Check {
            name,
            probe,
            timeout: self.timeout.unwrap_or(defaults.timeout),
            fix: self.fix.map(|command| Fix {
                command,
                timeout: self.fix_timeout.unwrap_or(defaults.fix_timeout),
            }),
        })
    }
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a check name must not be empty".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!(
            "check name {name:?} is longer than {MAX_NAME} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("check name {name:?} contains a control character"));
    }
    Ok(())
}

/// `host:port` with a numeric port (`[v6]:port` for IPv6 literals).
fn validate_address(address: &str) -> Result<(), String> {
    let usage = "use host:port, e.g. 127.0.0.1:5432 or localhost:8080";
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("address {address:?} has no port ({usage})"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("address {address:?} is not host:port ({usage})"));
    }
    Ok(())
}

fn validate_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
        Some(_) => Err(format!("url {url:?} has no host")),
        None => Err(format!("url {url:?} must start with http:// or https://")),
    }
}

/// A duration string like `500ms`, `5s`, `1m`; longer than zero.
fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    match humantime::parse_duration(s.trim()) {
        Ok(v) if v.is_zero() => Err(de::Error::custom(format!(
            "invalid duration {s:?}: must be longer than zero"
        ))),
        Ok(v) => Ok(Some(v)),
        Err(e) => Err(de::Error::custom(format!(
            "invalid duration {s:?}: {e} (use e.g. 500ms, 5s, 1m)"
        ))),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let offset = (0..=offset)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, PreflightError> {
        Config::parse(text, Path::new("jobwatch.toml"), Path::new("/base"))
    }

    #[track_caller]
    fn error(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("expected an error, parsed {c:#?}"),
            Err(e) => e.to_string(),
        }
    }

    const FULL: &str = r#"
[defaults]
timeout = "2s"
fix_timeout = "30s"

[[check]]
name = "db"
kind = "tcp"
address = "127.0.0.1:5432"
timeout = "1s"
fix = "pg_ctl start"

[[check]]
name = "api"
kind = "http"
url = "http://127.0.0.1:8080/health"

[[check]]
name = "compiler"
kind = "command"
command = ["cargo", "--version"]
fix = ["rustup", "default", "stable"]
fix_timeout = "5m"

[[check]]
name = "tool"
kind = "path"
path = "./bin/tool"
executable = true
"#;

    #[test]
    fn a_full_config_parses_in_file_order_with_defaults_applied() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.base_dir, Path::new("/base"));
        let names: Vec<_> = c.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["db", "api", "compiler", "tool"]);

        let db = &c.checks[0];
        assert_eq!(
            db.probe,
            Probe::Tcp {
                address: "127.0.0.1:5432".into()
            }
        );
        assert_eq!(db.timeout, Duration::from_secs(1));
        let fix = db.fix.as_ref().unwrap();
        assert_eq!(fix.command, CommandLine::Shell("pg_ctl start".into()));
        assert_eq!(fix.timeout, Duration::from_secs(30));

        assert_eq!(c.checks[1].timeout, Duration::from_secs(2));
        assert_eq!(c.checks[1].fix, None);

        let compiler = &c.checks[2];
        assert_eq!(
            compiler.probe,
            Probe::Command(CommandLine::Argv(vec!["cargo".into(), "--version".into()]))
        );
        assert_eq!(
            compiler.fix.as_ref().unwrap().timeout,
            Duration::from_secs(300)
        );

        assert_eq!(
            c.checks[3].probe,
            Probe::Path {
                path: "./bin/tool".into(),
                executable: true,
                dir: None
            }
        );
    }

    #[test]
    fn built_in_defaults_apply_without_a_defaults_table() {
        let c = parse(
            "[[check]]\nname = \"x\"\nkind = \"command\"\ncommand = \"true\"\nfix = \"true\"\n",
        )
        .unwrap();
        assert_eq!(c.checks[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            c.checks[0].fix.as_ref().unwrap().timeout,
            DEFAULT_FIX_TIMEOUT
        );
    }

    #[test]
    fn malformed_toml_names_the_file_and_line() {
        let e = error("[[check]]\nname = \"a\"\nkind = \"tcp\"\naddress = 127.0.0.1:80\n");
        assert!(e.starts_with("jobwatch.toml:4:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn an_unknown_key_is_refused_at_its_line() {
        let e = error("[[check]]\nname = \"a\"\nkind = \"tcp\"\nadress = \"h:1\"\n");
        assert!(e.starts_with("jobwatch.toml:4:"), "{e}");
        assert!(e.contains("adress"), "{e}");
        let e = error("[default]\ntimeout = \"1s\"\n");
        assert!(e.starts_with("jobwatch.toml:1:"), "{e}");
        assert!(e.contains("default"), "{e}");
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        let e = error("[[check]]\nname = \"a\"\nkind = \"udp\"\n");
        assert!(e.starts_with("jobwatch.toml:3:"), "{e}");
        assert!(e.contains("udp"), "{e}");
    }

    #[test]
    fn a_field_of_another_kind_is_refused() {
        let e = error(
            "[[check]]\nname = \"a\"\nkind = \"tcp\"\naddress = \"h:1\"\nurl = \"http://h/\"\n",
        );
        assert!(e.starts_with("jobwatch.toml:5:"), "{e}");
        assert!(e.contains("`url` is not a setting of a tcp check"), "{e}");
    }

    #[test]
    fn a_missing_kind_setting_is_refused() {
        let e = error("[[check]]\nname = \"a\"\nkind = \"http\"\n");
        assert!(e.starts_with("jobwatch.toml:2:"), "{e}");
        assert!(e.contains("needs `url`"), "{e}");
    }

    #[test]
    fn names_must_be_unique_and_non_empty() {
        let dup = "[[check]]\nname = \"a\"\nkind = \"command\"\ncommand = \"true\"\n\
                   [[check]]\nname = \"a\"\nkind = \"command\"\ncommand = \"true\"\n";
        let e = error(dup);
        assert!(e.contains("duplicate check name \"a\""), "{e}");
        assert!(e.starts_with("jobwatch.toml:6:"), "{e}");
        let e = error("[[check]]\nname = \"  \"\nkind = \"command\"\ncommand = \"true\"\n");
        assert!(e.contains("must not be empty"), "{e}");
        let e = error("[[check]]\nkind = \"command\"\ncommand = \"true\"\n");
        assert!(e.contains("name"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let check = |extra: &str| format!("[[check]]\nname = \"a\"\n{extra}\n");
        for (extra, needle) in [
            ("kind = \"tcp\"\naddress = \"localhost\"", "no port"),
            (
                "kind = \"tcp\"\naddress = \"localhost:http\"",
                "not host:port",
            ),
            ("kind = \"http\"\nurl = \"ftp://h/\"", "http:// or https://"),
            ("kind = \"command\"\ncommand = \"\"", "empty"),
            ("kind = \"command\"\ncommand = []", "program"),
            (
                "kind = \"command\"\ncommand = 3",
                "shell command string or an array",
            ),
            (
                "kind = \"command\"\ncommand = \"true\"\ntimeout = \"5\"",
                "invalid duration",
            ),
            (
                "kind = \"command\"\ncommand = \"true\"\ntimeout = \"0s\"",
                "longer than zero",
            ),
            ("kind = \"path\"\npath = \"\"", "empty"),
        ] {
            let e = error(&check(extra));
            assert!(e.contains(needle), "{extra:?}: {e}");
            assert!(e.starts_with("jobwatch.toml:"), "{e}");
        }
    }

    #[test]
    fn a_config_without_checks_is_refused() {
        assert!(error("").contains("no checks"));
        assert!(error("[defaults]\ntimeout = \"1s\"\n").contains("no checks"));
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let e = Config::load(Path::new("/nonexistent/jobwatch.toml")).unwrap_err();
        assert!(matches!(e, PreflightError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/jobwatch.toml"), "{e}");
    }

    #[test]
    fn relative_paths_start_at_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jobwatch.toml");
        std::fs::write(
            &file,
            "[[check]]\nname = \"a\"\nkind = \"path\"\npath = \"x\"\n",
        )
        .unwrap();
        assert_eq!(Config::load(&file).unwrap().base_dir, dir.path());
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\ncé\nx", 0), (1, 1));
        assert_eq!(line_column("ab\ncé\nx", 3), (2, 1));
        assert_eq!(line_column("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_column("ab\ncé\nx", 6), (2, 3));
    }
}
