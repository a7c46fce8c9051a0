//! Kafka's `sasl.jaas.config` syntax (Kafka `JaasConfig`, a Java `StreamTokenizer` grammar):
//!
//! ```text
//! org.apache.kafka.common.security.plain.PlainLoginModule required
//!     username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-pw";
//! ```
//!
//! One login module: its class name, a control flag (`required`, `requisite`, `sufficient`,
//! `optional`), options `key=value` (values quoted with `"` or `'` and backslash escapes, or bare
//! words), and a closing `;`. `//` and `/* */` comments are skipped. Kafka refuses a
//! `sasl.jaas.config` with more or fewer than one module, and so does this parser.
//!
//! For the PLAIN server, `user_NAME="password"` options are the users; for every mechanism,
//! `username`/`password` are what this broker sends as an inter-broker client.

use std::collections::BTreeMap;
use std::fmt;

/// Longest `sasl.jaas.config` accepted (it is a config value, not client input).
pub const JAAS_CONFIG_SIZE_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JaasError {
    #[error("sasl.jaas.config: {0}")]
    Syntax(String),
}

fn syntax(message: impl Into<String>) -> JaasError {
    JaasError::Syntax(message.into())
}

/// Kafka `AppConfigurationEntry.LoginModuleControlFlag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlFlag {
    Required,
    Requisite,
    Sufficient,
    Optional,
}

/// One parsed login module. `Debug` does not print option values (they hold passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct JaasConfig {
    pub login_module: String,
    pub control_flag: ControlFlag,
    pub options: BTreeMap<String, String>,
}

impl fmt::Debug for JaasConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JaasConfig")
            .field("login_module", &self.login_module)
            .field("control_flag", &self.control_flag)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn is_word_char(c: char) -> bool {
    !(c.is_whitespace() || c == '=' || c == ';' || c == '"' || c == '\'')
}

fn tokenize(text: &str) -> Result<Vec<Token>, JaasError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '/' {
            chars.next();
            match chars.peek() {
                Some('/') => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('*') => {
                    chars.next();
                    let mut previous = ' ';
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if previous == '*' && c == '/' {
                            closed = true;
                            break;
                        }
                        previous = c;
                    }
                    if !closed {
                        return Err(syntax("unterminated /* comment"));
                    }
                }
                _ => {
                    // A bare word starting with '/', e.g. a path.
                    let mut word = String::from('/');
                    while let Some(&c) = chars.peek() {
                        if !is_word_char(c) {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    tokens.push(Token::Word(word));
                }
            }
        } else if c == '=' {
            chars.next();
            tokens.push(Token::Equals);
        } else if c == ';' {
            chars.next();
            tokens.push(Token::Semicolon);
        } else if c == '"' || c == '\'' {
            let quote = c;
            chars.next();
            let mut value = String::new();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == quote {
                    closed = true;
                    break;
                }
                if c == '\\' {
                    let escaped = chars
                        .next()
                        .ok_or_else(|| syntax("unterminated quoted value"))?;
                    value.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        other => other,
                    });
                } else {
                    value.push(c);
                }
            }
            if !closed {
                return Err(syntax("unterminated quoted value"));
            }
            tokens.push(Token::Quoted(value));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if !is_word_char(c) {
                    break;
                }
                word.push(c);
                chars.next();
            }
            tokens.push(Token::Word(word));
        }
    }
    Ok(tokens)
}

impl JaasConfig {
    /// Parses a `sasl.jaas.config` value holding exactly one login module.
    pub fn parse(text: &str) -> Result<Self, JaasError> {
        if text.len() > JAAS_CONFIG_SIZE_BYTES_MAX {
            return Err(syntax("value too long"));
        }
        let tokens = tokenize(text)?;
        let mut iter = tokens.into_iter().peekable();
        let login_module = match iter.next() {
            Some(Token::Word(word)) => word,
            Some(other) => return Err(syntax(format!("expected a login module, got {other:?}"))),
            None => return Err(syntax("must contain one login module, found none")),
        };
        let control_flag = match iter.next() {
            Some(Token::Word(flag)) => match flag.to_ascii_lowercase().as_str() {
                "required" => ControlFlag::Required,
                "requisite" => ControlFlag::Requisite,
                "sufficient" => ControlFlag::Sufficient,
                "optional" => ControlFlag::Optional,
                _ => return Err(syntax(format!("invalid control flag '{flag}'"))),
            },
            _ => {
                return Err(syntax(format!(
                    "login module {login_module}: control flag missing"
                )))
            }
        };
        let mut options = BTreeMap::new();
        loop {
            match iter.next() {
                Some(Token::Semicolon) => break,
                Some(Token::Word(key)) => {
                    if iter.next() != Some(Token::Equals) {
                        return Err(syntax(format!("option '{key}': expected '='")));
                    }
                    let value = match iter.next() {
                        Some(Token::Word(v)) | Some(Token::Quoted(v)) => v,
                        _ => return Err(syntax(format!("option '{key}': value missing"))),
                    };
                    options.insert(key, value);
                }
                Some(other) => return Err(syntax(format!("unexpected {other:?}"))),
                None => return Err(syntax("login module not terminated by ';'")),
            }
        }
        if iter.next().is_some() {
            return Err(syntax("must contain one login module, found more"));
        }
        Ok(Self {
            login_module,
            control_flag,
            options,
        })
    }

    /// The `username` option (the inter-broker client's user).
    pub fn username(&self) -> Option<&str> {
        self.options.get("username").map(String::as_str)
    }

    /// The `password` option (the inter-broker client's password).
    pub fn password(&self) -> Option<&str> {
        self.options.get("password").map(String::as_str)
    }

    /// PLAIN's users: every `user_NAME="password"` option, as (NAME, password).
    pub fn plain_users(&self) -> impl Iterator<Item = (&str, &str)> {
        self.options.iter().filter_map(|(key, value)| {
            key.strip_prefix("user_")
                .filter(|name| !name.is_empty())
                .map(|name| (name, value.as_str()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafkas_plain_example() {
        let config = JaasConfig::parse(
            "org.apache.kafka.common.security.plain.PlainLoginModule required\n  username=\"admin\" password=\"admin-secret\"\n  user_admin=\"admin-secret\" user_alice=\"alice-pw\";",
        )
        .unwrap();
        assert_eq!(
            config.login_module,
            "org.apache.kafka.common.security.plain.PlainLoginModule"
        );
        assert_eq!(config.control_flag, ControlFlag::Required);
        assert_eq!(config.username(), Some("admin"));
        assert_eq!(config.password(), Some("admin-secret"));
        let users: Vec<_> = config.plain_users().collect();
        assert_eq!(
            users,
            vec![("admin", "admin-secret"), ("alice", "alice-pw")]
        );
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn quoted_values_bare_words_escapes_and_comments() {
        let config = JaasConfig::parse(
            "/* c */ a.B optional // line\n k=v-1.2 q='it\\'s' e=\"x\\\"y\\\\z\\n\" path=/etc/x ;",
        )
        .unwrap();
        assert_eq!(config.control_flag, ControlFlag::Optional);
        assert_eq!(config.options["k"], "v-1.2");
        assert_eq!(config.options["q"], "it's");
        assert_eq!(config.options["e"], "x\"y\\z\n");
        assert_eq!(config.options["path"], "/etc/x");
    }

    #[test]
    fn refuses_malformed_configs() {
        for bad in [
            "",
            "Module;",
            "Module maybe;",
            "Module required a=\"b\"",
            "Module required a;",
            "Module required a=;",
            "Module required a=\"b;",
            "Module required; Other required;",
            "Module required /* x",
        ] {
            assert!(JaasConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
