//! `egpu serve` driven by real clients: the official `openai` Python package and headless
//! Chromium (through Selenium) on the embedded chat page. Each test starts its own server on a
//! free loopback port with the real SmolLM2-135M model.

mod common;

use common::{egpu_bin, python_has, run_script, smollm2, Server};

#[test]
fn openai_client_gets_answers_streams_limits_and_errors() {
    let test = "openai_client_gets_answers_streams_limits_and_errors";
    let Some(model) = smollm2(test) else { return };
    if !python_has(&["openai"], test) {
        return;
    }
    let server = Server::start(&model, &["--max-body-bytes", "4096", "--max-tokens-limit", "4096"]);
    run_script("openai_client.py", &[&server.url]);
}

#[test]
fn api_key_is_required_when_set() {
    let test = "api_key_is_required_when_set";
    let Some(model) = smollm2(test) else { return };
    if !python_has(&["openai"], test) {
        return;
    }
    let server = Server::start(&model, &["--api-key", "s3cret"]);
    run_script("openai_client.py", &[&server.url, "s3cret"]);
}

#[test]
fn chat_page_streams_an_answer_in_headless_chromium() {
    let test = "chat_page_streams_an_answer_in_headless_chromium";
    let Some(model) = smollm2(test) else { return };
    if !python_has(&["selenium"], test) {
        return;
    }
    let (chromium, driver) = ("/usr/bin/chromium", "/usr/bin/chromedriver");
    if !std::path::Path::new(chromium).exists() || !std::path::Path::new(driver).exists() {
        common::skip(&format!(
            "SKIP {test}: needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`)"
        ));
        return;
    }
    // Greedy and short by default, so that the page's answers are known.
    let server = Server::start(&model, &["--temp", "0", "--max-tokens-limit", "48"]);
    let shot = std::env::var("EGPU_SCREENSHOT").unwrap_or_else(|_| {
        std::env::temp_dir().join("egpu-chat-page.png").to_string_lossy().into_owned()
    });
    run_script("chat_page.py", &[&server.url, chromium, driver, &shot]);
}

#[test]
fn non_loopback_host_needs_an_api_key() {
    // Refused before the model is opened, so no model file is needed.
    let out = std::process::Command::new(egpu_bin())
        .args(["serve", "missing.gguf", "--host", "0.0.0.0"])
        .env_remove("EGPU_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--api-key") && err.contains("127.0.0.1"), "{err}");
    let out = std::process::Command::new(egpu_bin())
        .args(["serve", "missing.gguf", "--host", "example.com"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an IP address"), "{err}");
}
