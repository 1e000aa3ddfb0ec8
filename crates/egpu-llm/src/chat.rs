//! Chat prompts: the GGUF `tokenizer.chat_template` rendered with minijinja, configured like the
//! Hugging Face renderer (trim_blocks, lstrip_blocks, Python string methods, `raise_exception`).

use std::collections::BTreeMap;

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};

/// Errors from rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The model has no chat template.
    #[error("the model has no tokenizer.chat_template; run without --chat and write the prompt format yourself")]
    NoTemplate,
    /// The template failed to compile or render.
    #[error("rendering tokenizer.chat_template: {0:#}")]
    Render(#[from] JinjaError),
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// Renders `template` for `messages`. `bos` and `eos` are the texts of those tokens.
pub fn render_chat(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
) -> Result<String, ChatError> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<Value, JinjaError> {
        Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |format: String| strftime_now(&format));
    env.add_template("chat", template)?;
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut map = BTreeMap::new();
            map.insert("role".to_string(), Value::from(m.role.as_str()));
            map.insert("content".to_string(), Value::from(m.content.as_str()));
            Value::from(map)
        })
        .collect();
    let mut ctx = BTreeMap::new();
    ctx.insert("messages", Value::from(messages));
    ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
    ctx.insert("bos_token", Value::from(bos));
    ctx.insert("eos_token", Value::from(eos));
    Ok(env.get_template("chat")?.render(ctx)?)
}

/// The current UTC date and time formatted with a subset of `strftime` (%Y %m %d %H %M %S %b %B
/// %%); templates use it to tell the model today's date.
fn strftime_now(format: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_unix_time(secs, format)
}

fn format_unix_time(secs: u64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format() {
        // 2024-02-29 13:05:09 UTC
        assert_eq!(
            format_unix_time(1_709_211_909, "%Y-%m-%d %H:%M:%S %b %B %%"),
            "2024-02-29 13:05:09 Feb February %"
        );
        assert_eq!(format_unix_time(0, "%d %b %Y"), "01 Jan 1970");
    }

    #[test]
    fn python_methods_and_exceptions_work() {
        let t = "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}\
                 {% for m in messages %}[{{ m.role.upper() }}]{{ m.content.strip() }}\n{% endfor %}";
        let out = render_chat(t, &[ChatMessage::new("user", "  hi  ")], false, "", "").unwrap();
        assert_eq!(out, "[USER]hi\n");
        let err = render_chat(t, &[ChatMessage::new("assistant", "x")], false, "", "").unwrap_err();
        assert!(err.to_string().contains("first must be user"), "{err}");
    }
}
