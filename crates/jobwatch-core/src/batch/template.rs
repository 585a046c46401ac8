//! Templates in a plan: `{axis}` and `{repeat}` placeholders in names,
//! commands, judges, environment values and working directories.
//!
//! Only `{identifier}` is a placeholder, so shell text like `awk '{print $1}'`
//! or JSON like `{"a": {"b": 1}}` stays literal; `{{identifier}}` writes a
//! literal `{identifier}` (`${{HOME}}` is the shell's `${HOME}`). An
//! identifier that is neither an axis nor `repeat` is an error, so a typo
//! never silently becomes text.

/// The placeholder that stands for the repetition number (1-based).
pub const REPEAT: &str = "repeat";

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Axis(String),
    Repeat,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// The values a template is rendered with.
pub trait Values {
    /// The value of `axis` (every axis a template names has one).
    fn axis(&self, axis: &str) -> &str;
    /// The repetition number, when the job is repeated.
    fn repeat(&self) -> Option<u32>;
}

impl Template {
    /// Parses `text`; `axes` are the placeholders allowed besides `repeat`.
    pub fn parse(text: &str, axes: &[String]) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('{') {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(name) = escaped(tail) {
                literal.push('{');
                literal.push_str(name);
                literal.push('}');
                rest = &tail[name.len() + 4..];
                continue;
            }
            match placeholder(tail) {
                Some(name) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(known(name, axes)?);
                    rest = &tail[name.len() + 2..];
                }
                None => {
                    literal.push('{');
                    rest = &tail[1..];
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// The axes it names, in order of first use.
    pub fn axes(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Axis(a) => Some(a.as_str()),
            _ => None,
        })
    }

    /// Whether it names `{repeat}`.
    pub fn uses_repeat(&self) -> bool {
        self.pieces.contains(&Piece::Repeat)
    }

    /// The text with every placeholder replaced.
    pub fn render(&self, values: &dyn Values) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Axis(a) => out.push_str(values.axis(a)),
                Piece::Repeat => {
                    if let Some(r) = values.repeat() {
                        out.push_str(&r.to_string());
                    }
                }
            }
        }
        out
    }
}

/// The identifier of a placeholder at the start of `s` (`{name}`), if it
/// is one: a letter or `_`, then letters, digits, `_` or `-`.
fn placeholder(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('{')?;
    let end = inner.find('}')?;
    let name = &inner[..end];
    is_identifier(name).then_some(name)
}

/// The identifier of an escaped placeholder at the start of `s`
/// (`{{name}}`), if it is one.
fn escaped(s: &str) -> Option<&str> {
    let name = placeholder(s.strip_prefix('{')?)?;
    s[name.len() + 2..].starts_with("}}").then_some(name)
}

/// Whether `s` may name an axis (and so be a placeholder).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn known(name: &str, axes: &[String]) -> Result<Piece, String> {
    if name == REPEAT {
        return Ok(Piece::Repeat);
    }
    if axes.iter().any(|a| a == name) {
        return Ok(Piece::Axis(name.to_owned()));
    }
    let mut known: Vec<&str> = axes.iter().map(String::as_str).collect();
    known.push(REPEAT);
    Err(format!(
        "unknown placeholder {{{name}}} (known: {}); write {{{{{name}}}}} for literal braces",
        known.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V;
    impl Values for V {
        fn axis(&self, axis: &str) -> &str {
            match axis {
                "agent" => "alpha",
                "task" => "t1",
                _ => unreachable!("{axis}"),
            }
        }
        fn repeat(&self) -> Option<u32> {
            Some(3)
        }
    }

    fn axes() -> Vec<String> {
        vec!["agent".into(), "task".into()]
    }

    #[test]
    fn placeholders_are_replaced_and_everything_else_kept() {
        let t = Template::parse("{task}-{agent}-{repeat}", &axes()).unwrap();
        assert_eq!(t.render(&V), "t1-alpha-3");
        assert_eq!(t.axes().collect::<Vec<_>>(), ["task", "agent"]);
        assert!(t.uses_repeat());
        let t = Template::parse("awk '{print $1}' {task}", &axes()).unwrap();
        assert_eq!(t.render(&V), "awk '{print $1}' t1");
        assert!(!t.uses_repeat());
        let t = Template::parse("{ task } {} { }{", &axes()).unwrap();
        assert_eq!(t.render(&V), "{ task } {} { }{");
    }

    #[test]
    fn doubled_braces_around_an_identifier_are_a_literal_placeholder() {
        let t = Template::parse("${{HOME}}/{{task}} }} {{ {{x y}}", &axes()).unwrap();
        assert_eq!(t.render(&V), "${HOME}/{task} }} {{ {{x y}}");
        assert_eq!(t.axes().count(), 0);
        let json = Template::parse(r#"{"usage": {"usd": 0.{task}}}"#, &axes()).unwrap();
        assert_eq!(json.render(&V), r#"{"usage": {"usd": 0.t1}}"#);
    }

    #[test]
    fn an_unknown_placeholder_is_refused_naming_the_known_ones() {
        let e = Template::parse("run {tsak}", &axes()).unwrap_err();
        assert!(e.contains("unknown placeholder {tsak}"), "{e}");
        assert!(e.contains("agent, task, repeat"), "{e}");
        assert!(e.contains("{{tsak}}"), "{e}");
        assert!(Template::parse("${HOME}", &axes()).is_err());
    }
}
