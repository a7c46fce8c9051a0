//! The principal of an mTLS connection: the client certificate's subject as an RFC 2253
//! distinguished name (what Java's `X500Principal.getName()` gives Kafka), mapped by Kafka's
//! `SslPrincipalMapper` rules (`ssl.principal.mapping.rules`).
//!
//! Rules are Kafka's syntax: a comma list of `DEFAULT` (the whole DN) and
//! `RULE:pattern/replacement/[LU]` (when `pattern` matches the whole DN, the DN with every
//! match replaced by `replacement`, `$n` being group `n`, then lower- or upper-cased). The
//! first rule that applies wins; when none applies the connection is refused. Patterns are
//! Rust `regex` syntax, which covers what Kafka's examples use (no look-around).

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use super::TlsError;

/// Kafka's `RULE_PATTERN`: `DEFAULT`, a rule, or anything else (refused).
const RULE_PATTERN: &str = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)";

fn rule_splitter() -> &'static Regex {
    static SPLITTER: OnceLock<Regex> = OnceLock::new();
    SPLITTER.get_or_init(|| {
        Regex::new(&format!(r"\s*({RULE_PATTERN})\s*(,\s*|$)"))
            .unwrap_or_else(|err| unreachable!("constant pattern: {err}"))
    })
}

fn rule_parser() -> &'static Regex {
    static PARSER: OnceLock<Regex> = OnceLock::new();
    PARSER.get_or_init(|| {
        Regex::new(&format!("^(?:{RULE_PATTERN})"))
            .unwrap_or_else(|err| unreachable!("constant pattern: {err}"))
    })
}

/// Kafka's `SslPrincipalMapper`.
#[derive(Debug, Clone)]
pub struct SslPrincipalMapper {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
enum Case {
    Keep,
    Lower,
    Upper,
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        /// As written (for `Display`).
        pattern_text: String,
        replacement_text: String,
        /// The pattern anchored at both ends: Java's `Matcher.matches`.
        whole: Regex,
        /// The pattern as written, for `replaceAll`.
        pattern: Regex,
        /// `replacement_text` in `regex`'s replacement syntax.
        replacement: String,
        case: Case,
    },
}

impl SslPrincipalMapper {
    /// Parses `ssl.principal.mapping.rules`.
    pub fn from_rules(rules: &str) -> Result<Self, TlsError> {
        let invalid = |reason: String| TlsError::PrincipalRules { reason };
        let mut parsed = Vec::new();
        let text = rules.trim();
        for captures in rule_splitter().captures_iter(text) {
            let Some(rule) = captures.get(1).map(|m| m.as_str()) else {
                continue;
            };
            let Some(found) = rule_parser().captures(rule) else {
                return Err(invalid(format!("invalid rule: {rule}")));
            };
            let end = found.get(0).map_or(0, |m| m.end());
            if end != rule.len() {
                return Err(invalid(format!(
                    "invalid rule: `{rule}`, unmatched substring: `{}`",
                    &rule[end..]
                )));
            }
            if found.get(1).is_some() {
                parsed.push(Rule::Default);
            } else if let Some(pattern_text) = found.get(2) {
                let pattern_text = pattern_text.as_str().to_string();
                let replacement_text = found.get(4).map_or("", |m| m.as_str()).to_string();
                let case = match found.get(6).map(|m| m.as_str()) {
                    Some("L") => Case::Lower,
                    Some("U") => Case::Upper,
                    _ => Case::Keep,
                };
                let pattern = Regex::new(&pattern_text)
                    .map_err(|err| invalid(format!("pattern `{pattern_text}`: {err}")))?;
                let whole = Regex::new(&format!("^(?:{pattern_text})$"))
                    .map_err(|err| invalid(format!("pattern `{pattern_text}`: {err}")))?;
                let groups = pattern.captures_len() - 1;
                parsed.push(Rule::Replace {
                    replacement: java_replacement(&replacement_text, groups),
                    pattern_text,
                    replacement_text,
                    whole,
                    pattern,
                    case,
                });
            }
            // Empty rules (between commas) are ignored, as in Kafka.
        }
        Ok(Self { rules: parsed })
    }

    /// The principal name of `distinguished_name`; `None` when no rule applies.
    pub fn name(&self, distinguished_name: &str) -> Option<String> {
        self.rules
            .iter()
            .find_map(|rule| rule.apply(distinguished_name))
    }
}

impl Rule {
    fn apply(&self, dn: &str) -> Option<String> {
        match self {
            Rule::Default => Some(dn.to_string()),
            Rule::Replace {
                whole,
                pattern,
                replacement,
                case,
                ..
            } => {
                if !whole.is_match(dn) {
                    return None;
                }
                let result = pattern.replace_all(dn, replacement.as_str()).into_owned();
                Some(match case {
                    Case::Keep => result,
                    Case::Lower => result.to_lowercase(),
                    Case::Upper => result.to_uppercase(),
                })
            }
        }
    }
}

/// Java's `Matcher.replaceAll` replacement (`\x` is a literal x, `$n` a group, with the digits
/// taken while they name a group; Kafka turns references to missing groups into literals) in
/// `regex`'s syntax (`${n}`, `$$`).
fn java_replacement(text: &str, groups: usize) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            '$' => {
                let first = chars.peek().and_then(|d| d.to_digit(10));
                match first {
                    Some(first) if groups > 0 && (first as usize) <= groups => {
                        chars.next();
                        let mut group = first as usize;
                        while let Some(next) = chars.peek().and_then(|d| d.to_digit(10)) {
                            let longer = group * 10 + next as usize;
                            if longer > groups {
                                break;
                            }
                            group = longer;
                            chars.next();
                        }
                        out.push_str(&format!("${{{group}}}"));
                    }
                    _ => out.push_str("$$"),
                }
            }
            other => out.push(other),
        }
    }
    out
}

impl fmt::Display for SslPrincipalMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SslPrincipalMapper(rules = [")?;
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            match rule {
                Rule::Default => write!(f, "DEFAULT")?,
                Rule::Replace {
                    pattern_text,
                    replacement_text,
                    case,
                    ..
                } => {
                    write!(f, "RULE:{pattern_text}/{replacement_text}")?;
                    match case {
                        Case::Lower => write!(f, "/L")?,
                        Case::Upper => write!(f, "/U")?,
                        Case::Keep => {}
                    }
                }
            }
        }
        write!(f, "])")
    }
}

/// The subject of a DER certificate in RFC 2253 form (`CN=alice,OU=eng,O=acme`).
pub fn subject_rfc2253(certificate_der: &[u8]) -> Result<String, TlsError> {
    let (_, certificate) =
        X509Certificate::from_der(certificate_der).map_err(|err| TlsError::BadPeerCertificate {
            reason: err.to_string(),
        })?;
    Ok(rfc2253(certificate.subject()))
}

/// RFC 2253: the RDNs last to first, attributes of one RDN joined by `+`, the keywords Java
/// knows (CN, C, L, ST, O, OU, STREET, DC, UID), other types as dotted OIDs with the DER value
/// in hex.
pub fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    let keyword = match oid.as_str() {
                        "2.5.4.3" => Some("CN"),
                        "2.5.4.6" => Some("C"),
                        "2.5.4.7" => Some("L"),
                        "2.5.4.8" => Some("ST"),
                        "2.5.4.10" => Some("O"),
                        "2.5.4.11" => Some("OU"),
                        "2.5.4.9" => Some("STREET"),
                        "0.9.2342.19200300.100.1.25" => Some("DC"),
                        "0.9.2342.19200300.100.1.1" => Some("UID"),
                        _ => None,
                    };
                    match (keyword, attribute.as_str()) {
                        (Some(keyword), Ok(value)) => format!("{keyword}={}", escape(value)),
                        (keyword, _) => {
                            let value = attribute.attr_value();
                            let mut der = Vec::with_capacity(value.data.len() + 4);
                            let class = (value.header.class() as u8) << 6;
                            let constructed = if value.header.is_constructed() {
                                0x20
                            } else {
                                0
                            };
                            der.push(class | constructed | (value.header.tag().0 as u8 & 0x1f));
                            let len = value.data.len();
                            if len < 0x80 {
                                der.push(len as u8);
                            } else {
                                let bytes: Vec<u8> = len
                                    .to_be_bytes()
                                    .into_iter()
                                    .skip_while(|b| *b == 0)
                                    .collect();
                                der.push(0x80 | bytes.len() as u8);
                                der.extend_from_slice(&bytes);
                            }
                            der.extend_from_slice(value.data);
                            let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                            format!("{}=#{hex}", keyword.unwrap_or(oid.as_str()))
                        }
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 2253 section 2.4 escaping.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // After Kafka's SslPrincipalMapperTest.

    #[test]
    fn valid_rules() {
        for rules in [
            "DEFAULT",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
            "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
            "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
            "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
        ] {
            SslPrincipalMapper::from_rules(rules).unwrap_or_else(|e| panic!("{rules}: {e}"));
        }
    }

    #[test]
    fn invalid_rules() {
        for rules in [
            "default",
            "DEFAUL",
            "DEFAULT/L",
            "DEFAULT/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
            "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
        ] {
            assert!(
                SslPrincipalMapper::from_rules(rules).is_err(),
                "{rules} should be refused"
            );
        }
    }

    #[test]
    fn mapping() {
        let rules = [
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
            "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
            "DEFAULT",
        ]
        .join(", ");
        let mapper = SslPrincipalMapper::from_rules(&rules).unwrap();
        let name = |dn: &str| mapper.name(dn).unwrap();
        assert_eq!(name("CN=Duke,OU=ServiceUsers,O=Org,C=US"), "duke");
        assert_eq!(
            name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US"),
            "duke@sme"
        );
        assert_eq!(name("cn=duke,ou=sme,dc=mycp,dc=com"), "DUKE@SME");
        assert_eq!(name("cN=duke,OU=JavaSoft,O=Sun Microsystems"), "DUKE");
        assert_eq!(
            name("OU=JavaSoft,O=Sun Microsystems,C=US"),
            "OU=JavaSoft,O=Sun Microsystems,C=US"
        );
        // Without DEFAULT a DN no rule matches has no principal.
        let strict =
            SslPrincipalMapper::from_rules("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/").unwrap();
        assert_eq!(strict.name("CN=x,OU=Other"), None);
    }

    fn splits(expected: &str, rules: &str) {
        let mapper = SslPrincipalMapper::from_rules(rules).unwrap();
        assert_eq!(
            mapper.to_string(),
            format!("SslPrincipalMapper(rules = {expected})"),
            "{rules}"
        );
    }

    #[test]
    fn rules_splitting() {
        splits("[]", "");
        splits("[DEFAULT]", "DEFAULT");
        splits("[RULE:/]", "RULE://");
        splits("[RULE:/.*]", "RULE:/.*/");
        splits("[RULE:/.*/L]", "RULE:/.*/L");
        splits("[RULE:/, DEFAULT]", "RULE://,DEFAULT");
        splits("[RULE:/, DEFAULT]", "  RULE:// ,  DEFAULT  ");
        splits(
            "[RULE:   /     , DEFAULT]",
            "  RULE:   /     / ,  DEFAULT  ",
        );
        splits(
            "[RULE:  /     /U, DEFAULT]",
            "  RULE:  /     /U   ,DEFAULT  ",
        );
        splits(
            "[RULE:([A-Z]*)/$1/U, RULE:([a-z]+)/$1, DEFAULT]",
            "  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  ",
        );
        splits("[]", ",   , , ,      , , ,   ");
        splits("[RULE:/, DEFAULT]", ",,RULE://,,,DEFAULT,,");
        splits(
            "[RULE: /   , DEFAULT]",
            ",  , RULE: /   /    ,,,   DEFAULT, ,   ",
        );
        splits(
            "[RULE:   /  /U, DEFAULT]",
            "     ,  , RULE:   /  /U    ,,  ,DEFAULT, ,",
        );
        splits(r"[RULE:\/\\\(\)\n\t/\/\/]", r"RULE:\/\\\(\)\n\t/\/\//");
        splits(
            r"[RULE:\**\/+/*/L, RULE:\/*\**/**]",
            r"RULE:\**\/+/*/L,RULE:\/*\**/**/",
        );
    }

    #[test]
    fn comma_with_whitespace() {
        let mapper =
            SslPrincipalMapper::from_rules(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT").unwrap();
        assert_eq!(
            mapper
                .name(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz")
                .unwrap(),
            r"Tkac\, Adam"
        );
    }

    #[test]
    fn java_replacements_become_regex_replacements() {
        assert_eq!(java_replacement("$1@$2", 2), "${1}@${2}");
        assert_eq!(java_replacement("$12", 1), "${1}2");
        assert_eq!(java_replacement("$12", 12), "${12}");
        assert_eq!(java_replacement("$4", 3), "$$4");
        assert_eq!(java_replacement(r"a\$b", 1), "a$$b");
    }

    #[test]
    fn subjects_print_in_rfc2253_order_with_escapes() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::OrganizationName, "Acme, Inc");
        dn.push(rcgen::DnType::OrganizationalUnitName, "eng");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_rfc2253(cert.der()).unwrap(),
            r"CN=alice,OU=eng,O=Acme\, Inc,C=US"
        );
    }
}
