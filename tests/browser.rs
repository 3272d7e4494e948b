//! Penny in a real browser: headless Chromium, driven over WebDriver by fantoccini, visits the
//! real `penny` binary serving its bundled demo database: on a desktop and on a 390-pixel phone,
//! in light and dark, with scripts on and off. axe-core (from the npm registry, installed by
//! .ci/run under target/npm/, or where PENNY_AXE_CORE says) checks every page.

mod common;

use common::RunningPenny;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

const MISSING: &str = "browser test: Chromium or chromedriver is not installed";
/// How long a page, an element or chromedriver may take: far more than they need.
const PATIENCE: Duration = Duration::from_secs(20);

#[cfg_attr(
    not(penny_browser),
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver, brew install --cask chromium chromedriver, or set PENNY_TEST_CHROMIUM and PENNY_TEST_CHROMEDRIVER"
)]
#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_searches_and_the_form_remembers_the_author() {
    let Some(browser) = Browser::start(Screen::Desktop, Scripts::On).await else {
        return;
    };
    browser.visit(search_for_ker).await;
}

#[cfg_attr(
    not(penny_browser),
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver, brew install --cask chromium chromedriver, or set PENNY_TEST_CHROMIUM and PENNY_TEST_CHROMEDRIVER"
)]
#[tokio::test(flavor = "multi_thread")]
async fn the_pages_are_styled_by_penny_css_and_load_nothing_from_elsewhere() {
    let Some(browser) = Browser::start(Screen::Desktop, Scripts::On).await else {
        return;
    };
    browser.visit(check_the_styling).await;
}

#[cfg_attr(
    not(penny_browser),
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver, brew install --cask chromium chromedriver, or set PENNY_TEST_CHROMIUM and PENNY_TEST_CHROMEDRIVER"
)]
#[tokio::test(flavor = "multi_thread")]
async fn every_page_passes_axe_fits_the_screen_and_logs_nothing_in_both_colour_schemes() {
    let Some(axe) = axe_core() else {
        return;
    };
    for screen in [Screen::Desktop, Screen::Phone] {
        for dark in [false, true] {
            let Some(browser) = Browser::start(screen, Scripts::On).await else {
                return;
            };
            let axe = axe.clone();
            browser
                .visit(move |client, base| check_every_page(client, base, screen, dark, axe))
                .await;
        }
    }
}

#[cfg_attr(
    not(penny_browser),
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver, brew install --cask chromium chromedriver, or set PENNY_TEST_CHROMIUM and PENNY_TEST_CHROMEDRIVER"
)]
#[tokio::test(flavor = "multi_thread")]
async fn typing_shows_the_results_in_place_and_moves_the_address_and_back_goes_back() {
    let Some(browser) = Browser::start(Screen::Desktop, Scripts::On).await else {
        return;
    };
    browser.visit(search_as_you_type).await;
}

#[cfg_attr(
    not(penny_browser),
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver, brew install --cask chromium chromedriver, or set PENNY_TEST_CHROMIUM and PENNY_TEST_CHROMEDRIVER"
)]
#[tokio::test(flavor = "multi_thread")]
async fn with_scripts_off_the_form_searches_and_a_phone_still_needs_no_sideways_scroll() {
    let Some(browser) = Browser::start(Screen::Phone, Scripts::Off).await else {
        return;
    };
    browser.visit(search_without_scripts).await;
}

/// The pages checked in every screen and scheme: each kind of page, and the longest author.
const PAGES: &[&str] = &[
    "/",
    "/searchform",
    "/searchresults?author=ker",
    "/searchresults?author=e",
    "/searchresults?author=%D0%94%D0%9E%D0%A1%D0%A2",
    "/searchresults?author=zz",
    "/searchresults?author=",
    "/searchresults?author=kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
    "/nope",
];

async fn check_every_page(client: Client, base: String, screen: Screen, dark: bool, axe: String) {
    let scheme = if dark { "dark" } else { "light" };
    devtools(
        &client,
        "Emulation.setEmulatedMedia",
        json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
    )
    .await;
    record_csp_violations(&client).await;
    for path in PAGES {
        let context = format!("{path} on a {screen:?} in {scheme}");
        client.goto(&format!("{base}{path}")).await.unwrap();
        let page: serde_json::Value = client
            .execute(
                "return {
                    dark: matchMedia('(prefers-color-scheme: dark)').matches,
                    scrollWidth: document.documentElement.scrollWidth,
                    width: document.documentElement.clientWidth,
                    violations: window.__pennyViolations || null,
                };",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(page["dark"], dark, "{context}");
        if screen == Screen::Phone {
            assert_eq!(page["width"], 390, "{context}: the phone's width");
        }
        assert!(
            page["scrollWidth"].as_u64() <= page["width"].as_u64(),
            "{context}: scrolls sideways ({} px wide in {} px)",
            page["scrollWidth"],
            page["width"]
        );
        assert_eq!(page["violations"], json!([]), "{context}: CSP violations");
        let violations = axe_violations(&client, &axe).await;
        assert_eq!(violations, json!([]), "{context}: axe-core found problems");
        let errors = console_errors(&client, &base, path).await;
        assert!(errors.is_empty(), "{context}: console errors: {errors:#?}");
    }
}

async fn search_as_you_type(client: Client, base: String) {
    record_csp_violations(&client).await;
    client.goto(&format!("{base}/searchform")).await.unwrap();
    let field = client
        .find(Locator::Css("input[name='author']"))
        .await
        .unwrap();
    field.send_keys("godel").await.unwrap();
    wait_for_address(&client, &format!("{base}/searchresults?author=godel")).await;
    wait_for_heading(&client, "Author Search Results").await;
    let typed = results_text(&client).await;
    assert!(typed.contains("Books by godel: 1 book."), "{typed}");
    assert!(
        typed.contains("On Formally Undecidable Propositions"),
        "{typed}"
    );
    assert_eq!(
        client.title().await.unwrap(),
        "Author Search Results · Penny.com"
    );

    // Back is the form as it was; Forward the search again.
    client.back().await.unwrap();
    wait_for_address(&client, &format!("{base}/searchform")).await;
    wait_for_heading(&client, "Author Search").await;
    assert_eq!(results_text(&client).await, "");
    let value = client
        .execute(
            "return document.querySelector('input[name=author]').value;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(value, "");
    client.forward().await.unwrap();
    wait_for_address(&client, &format!("{base}/searchresults?author=godel")).await;
    wait_for_heading(&client, "Author Search Results").await;
    let deadline = Instant::now() + PATIENCE;
    while results_text(&client).await != typed {
        assert!(Instant::now() < deadline, "{}", results_text(&client).await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Reloading shows the server's page for the same search: the same results.
    client.refresh().await.unwrap();
    wait_for_heading(&client, "Author Search Results").await;
    assert_eq!(
        results_text(&client).await,
        typed,
        "the script's page and the server's"
    );
    record_csp_violations(&client).await;

    // More typing replaces the address rather than piling up history.
    let field = client
        .find(Locator::Css("input[name='author']"))
        .await
        .unwrap();
    field.send_keys("zz").await.unwrap();
    wait_for_address(&client, &format!("{base}/searchresults?author=godelzz")).await;
    let none = results_text(&client).await;
    assert!(none.contains("Books by godelzz: none."), "{none}");
    assert!(
        none.contains("No author’s name starts with “godelzz”."),
        "{none}"
    );

    let errors = console_errors(&client, &base, "").await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // A search the server refuses (only a script can type more than the field's 100
    // characters): the form says why, as the server's page does.
    field.clear().await.unwrap();
    field.send_keys(&"k".repeat(100)).await.unwrap();
    client
        .execute(
            "const field = document.querySelector('input[name=author]');
             field.value = field.value + 'kk';
             field.dispatchEvent(new Event('input'));",
            vec![],
        )
        .await
        .unwrap();
    let notice = client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#author-error"))
        .await
        .expect("the form shows the error");
    assert!(
        notice
            .text()
            .await
            .unwrap()
            .contains("at most 100 characters"),
        "{}",
        notice.text().await.unwrap()
    );

    // The one error in the console: the API's 400 for that search.
    let errors = console_errors(&client, &base, "").await;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("/api/books?author=kkk"), "{errors:#?}");
    assert!(errors[0].contains("status of 400"), "{errors:#?}");

    // Back goes to the page before the search: the reloaded results of "godel".
    client.back().await.unwrap();
    wait_for_address(&client, &format!("{base}/searchresults?author=godel")).await;
    let violations = client
        .execute("return window.__pennyViolations || [];", vec![])
        .await
        .unwrap();
    assert_eq!(violations, json!([]), "CSP violations");
}

async fn search_without_scripts(client: Client, base: String) {
    client.goto(&format!("{base}/searchform")).await.unwrap();
    let field = client
        .find(Locator::Css("input[name='author']"))
        .await
        .unwrap();
    field.send_keys("garcia").await.unwrap();
    // No result appears until the form is sent: no script runs.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(results_text(&client).await, "");
    // Enter in the field sends the form. Pressed through DevTools: chromedriver's own click
    // waits for the page's scripts to say the next page has loaded, which they never do here.
    for event in ["keyDown", "keyUp"] {
        devtools(
            &client,
            "Input.dispatchKeyEvent",
            json!({ "type": event, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                    "text": "\r" }),
        )
        .await;
    }
    wait_for_heading(&client, "Author Search Results").await;
    let results = results_text(&client).await;
    assert!(results.contains("Books by garcia: 1 book."), "{results}");
    assert!(results.contains("García Márquez"), "{results}");
    // The card for a book shows its title first.
    let first_cell = client
        .execute(
            "const cells = [...document.querySelectorAll('tbody tr:first-child td')];
             cells.sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top);
             return [cells[0].className, document.documentElement.scrollWidth,
                     document.documentElement.clientWidth];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(first_cell[0], "title", "{first_cell}");
    assert!(
        first_cell[1].as_u64() <= first_cell[2].as_u64(),
        "{first_cell}"
    );
}

/// The text of the results region, as a reader sees it.
async fn results_text(client: &Client) -> String {
    let text = client
        .execute(
            "const region = document.getElementById('results'); return region ? region.innerText : null;",
            vec![],
        )
        .await
        .unwrap();
    text.as_str()
        .expect("the page has a results region")
        .trim()
        .to_string()
}

async fn wait_for_address(client: &Client, address: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let url = client.current_url().await.unwrap();
        if url.as_str() == address {
            return;
        }
        assert!(Instant::now() < deadline, "still at {url}, not {address}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// From now on, every page this session opens records the CSP violations it sees.
async fn record_csp_violations(client: &Client) {
    devtools(
        client,
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": "window.__pennyViolations = [];
            document.addEventListener('securitypolicyviolation', (event) =>
                window.__pennyViolations.push(event.violatedDirective + ' ' + event.blockedURI));" }),
    )
    .await;
}

/// axe-core's violations on the current page, each with the elements it found them on.
async fn axe_violations(client: &Client, axe: &str) -> serde_json::Value {
    client.execute(axe, vec![]).await.expect("axe-core loads");
    client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
                .then((result) => done(result.violations.map((violation) => ({
                    id: violation.id,
                    help: violation.help,
                    nodes: violation.nodes.map((node) => node.target.join(' ')),
                }))))
                .catch((error) => done(String(error)));",
            vec![],
        )
        .await
        .expect("axe-core runs")
}

/// The console's errors since the last look, leaving out the one that says the page itself
/// answered 4xx (an error page is meant to).
async fn console_errors(client: &Client, base: &str, path: &str) -> Vec<String> {
    let entries = client
        .issue_cmd(BrowserLog)
        .await
        .expect("the browser's log");
    let own_status =
        format!("{base}{path} - Failed to load resource: the server responded with a status of 4");
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["level"] == "SEVERE")
        .filter_map(|entry| entry["message"].as_str())
        .filter(|message| path.is_empty() || !message.starts_with(&own_status))
        .map(str::to_string)
        .collect()
}

/// axe-core's script, where it is installed; None, after a loud notice, where it is not (a
/// failure when CI=true).
fn axe_core() -> Option<String> {
    let path = std::env::var_os("PENNY_AXE_CORE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/npm/node_modules/axe-core/axe.min.js")
        });
    match std::fs::read_to_string(&path) {
        Ok(script) => Some(script),
        Err(_) => {
            let missing = format!(
                "accessibility test: no axe-core at {} (npm install --prefix target/npm axe-core@4)",
                path.display()
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{missing}");
            }
            let rule = "=".repeat(78);
            let _ = std::io::stderr()
                .write_all(format!("\n{rule}\nSKIPPED: {missing}\n{rule}\n").as_bytes());
            None
        }
    }
}

/// A DevTools command, sent through chromedriver.
async fn devtools(client: &Client, cmd: &'static str, params: serde_json::Value) {
    client
        .issue_cmd(DevTools { cmd, params })
        .await
        .unwrap_or_else(|err| panic!("{cmd}: {err}"));
}

/// chromedriver's own command for DevTools: `POST /session/{id}/goog/cdp/execute`.
#[derive(Debug)]
struct DevTools {
    cmd: &'static str,
    params: serde_json::Value,
}

impl WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params }).to_string();
        (http::Method::POST, Some(body))
    }
}

/// chromedriver's command for the browser's console log since it was last read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Screen {
    /// 1280 by 900.
    Desktop,
    /// 390 by 844 at three pixels to the point: a current phone.
    Phone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scripts {
    On,
    Off,
}

async fn search_for_ker(client: Client, base: String) {
    client.goto(&base).await.expect("the home page opens");
    assert_eq!(client.title().await.unwrap(), "Penny.com");
    let greeting = heading(&client).await;
    assert!(
        [
            "Good morning and welcome to Penny.com",
            "Good afternoon and welcome to Penny.com"
        ]
        .contains(&greeting.as_str()),
        "unexpected home page heading {greeting:?}"
    );

    click_link(&client, "Click here to begin.").await;
    wait_for_heading(&client, "Author Search").await;
    assert_eq!(
        previous_search(&client).await,
        "Previous author search: none yet."
    );

    client
        .find(Locator::Css("label[for='author']"))
        .await
        .expect("the author field has a label");
    let field = client
        .find(Locator::Css("input[name='author']"))
        .await
        .expect("the form has an author field");
    assert_eq!(field.attr("id").await.unwrap().as_deref(), Some("author"));
    field.send_keys("ker").await.unwrap();
    client
        .find(Locator::Css("form button[type='submit']"))
        .await
        .expect("the form has a submit button")
        .click()
        .await
        .unwrap();

    wait_for_heading(&client, "Author Search Results").await;
    let main = text(&client, "main").await;
    assert!(main.contains("Books by ker:"), "{main}");
    let mut titles = Vec::new();
    let title_cells = client
        .find_all(Locator::Css("table tbody td:nth-child(3)"))
        .await;
    for cell in title_cells.unwrap() {
        titles.push(cell.text().await.unwrap());
    }
    assert!(
        titles.iter().any(|t| t == "The Practice of Programming"),
        "{titles:?}"
    );
    assert!(
        titles.iter().any(|t| t == "The C Programming Language"),
        "{titles:?}"
    );
    assert!(!titles.iter().any(|t| t == "Algorithms in C"), "{titles:?}");

    click_link(&client, "Click here to do another author search.").await;
    wait_for_heading(&client, "Author Search").await;
    assert_eq!(
        previous_search(&client).await,
        "Previous author search: ker"
    );
}

/// Turning every stylesheet off must change how the page looks, and every stylesheet and
/// resource must come from Penny itself.
async fn check_the_styling(client: Client, base: String) {
    client.goto(&base).await.expect("the home page opens");
    let script = r#"
        const probes = ["body", "h1", "a.button", "header", "footer"]
            .map((selector) => document.querySelector(selector))
            .filter((element) => element !== null);
        const look = () => probes.map((element) => {
            const style = getComputedStyle(element);
            return [style.fontFamily, style.fontSize, style.color, style.backgroundColor,
                    style.margin, style.padding, style.display].join(" | ");
        });
        const sheets = [...document.styleSheets];
        const styled = look();
        sheets.forEach((sheet) => { sheet.disabled = true; });
        const plain = look();
        sheets.forEach((sheet) => { sheet.disabled = false; });
        return {
            styled,
            plain,
            sheets: sheets.map((sheet) => ({ href: sheet.href, rules: sheet.cssRules.length })),
            resources: performance.getEntriesByType("resource").map((entry) => entry.name),
        };
    "#;
    let page = client.execute(script, vec![]).await.unwrap();

    let sheets = page["sheets"].as_array().unwrap();
    let penny_css = format!("{base}{}", penny::assets::url("penny.css"));
    assert!(
        sheets
            .iter()
            .any(|sheet| sheet["href"] == penny_css.as_str() && sheet["rules"].as_u64() > Some(0)),
        "penny.css was not loaded, or has no rules: {sheets:?}"
    );
    assert_ne!(
        page["styled"], page["plain"],
        "penny.css changes nothing on the home page: is assets/penny.css a placeholder?"
    );
    let origin = format!("{base}/");
    for url in sheets
        .iter()
        .map(|sheet| &sheet["href"])
        .chain(page["resources"].as_array().unwrap())
    {
        let url = url.as_str().unwrap_or_default();
        assert!(url.starts_with(&origin), "loaded from elsewhere: {url:?}");
    }
}

async fn heading(client: &Client) -> String {
    text(client, "h1").await
}

async fn text(client: &Client, selector: &str) -> String {
    let element = client.find(Locator::Css(selector)).await;
    let element = element.unwrap_or_else(|err| panic!("no {selector} on the page: {err}"));
    element.text().await.unwrap()
}

async fn previous_search(client: &Client) -> String {
    text(client, "p.previous").await
}

async fn click_link(client: &Client, link_text: &str) {
    let link = client.find(Locator::LinkText(link_text)).await;
    let link = link.unwrap_or_else(|err| panic!("no link {link_text:?}: {err}"));
    link.click().await.unwrap();
}

/// Waits for the next page, known by its h1.
async fn wait_for_heading(client: &Client, heading: &str) {
    let xpath = format!("//h1[normalize-space() = '{heading}']");
    let found = client
        .wait()
        .at_most(PATIENCE)
        .every(Duration::from_millis(25))
        .for_element(Locator::XPath(&xpath))
        .await;
    if let Err(err) = found {
        let url = client.current_url().await.map(String::from);
        panic!("no h1 {heading:?} on {url:?}: {err}");
    }
}

/// Penny, chromedriver and a WebDriver session, all ended when dropped or visited.
struct Browser {
    client: Client,
    base: String,
    // Dropped in this order: chromedriver goes before the profile it may still be writing.
    _chromedriver: KillOnDrop,
    _profile: tempfile::TempDir,
    _penny: RunningPenny,
}

impl Browser {
    /// None, after a loud notice, where the browser is not installed (a failure when CI=true).
    async fn start(screen: Screen, scripts: Scripts) -> Option<Browser> {
        let (Some(chromium), Some(chromedriver)) =
            (common::tools::chromium(), common::tools::chromedriver())
        else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{MISSING} ({})", common::tools::INSTALL_BROWSER);
            }
            // Straight to stderr: the test harness hides eprintln! output of passing tests.
            static BANNER: Once = Once::new();
            BANNER.call_once(|| {
                let rule = "=".repeat(78);
                let install = common::tools::INSTALL_BROWSER;
                let banner = format!("\n{rule}\nSKIPPED: {MISSING} ({install})\n{rule}\n");
                let _ = std::io::stderr().write_all(banner.as_bytes());
            });
            return None;
        };
        let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[], None);
        let base = format!("http://{}", penny.addr);
        let profile = tempfile::tempdir().expect("a temporary Chromium profile");
        let (chromedriver, webdriver) = start_chromedriver(&chromedriver);

        let mut capabilities = Capabilities::new();
        let user_data_dir = format!("--user-data-dir={}", profile.path().display());
        let mut options = json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                user_data_dir,
            ],
        });
        if screen == Screen::Phone {
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3.0, "touch": true }
            });
        }
        capabilities.insert("goog:chromeOptions".into(), options);
        capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));

        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .expect("chromedriver starts a Chromium session");
        if scripts == Scripts::Off {
            // The pages' scripts stop; WebDriver's own, which the test reads pages with, run.
            devtools(
                &client,
                "Emulation.setScriptExecutionDisabled",
                json!({ "value": true }),
            )
            .await;
        }
        Some(Browser {
            client,
            base,
            _chromedriver: chromedriver,
            _profile: profile,
            _penny: penny,
        })
    }

    /// Runs `scenario`, then closes the session (so Chromium quits) even if the scenario
    /// panicked, and only then passes its panic on.
    async fn visit<F, Fut>(self, scenario: F)
    where
        F: FnOnce(Client, String) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let outcome = tokio::spawn(scenario(self.client.clone(), self.base.clone())).await;
        let closed = self.client.close().await;
        if let Err(err) = outcome {
            std::panic::resume_unwind(err.into_panic());
        }
        closed.expect("the WebDriver session closes");
    }
}

/// Starts chromedriver on a port it picks itself, and returns it with its URL once it listens.
///
/// Picking a free port here and handing it over would race: between our probe and chromedriver's
/// bind, the port can go to another test's Chromium, which then answers the WebDriver session.
fn start_chromedriver(program: &Path) -> (KillOnDrop, String) {
    let mut child = Command::new(program)
        .arg("--port=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let stdout = child.stdout.take().expect("chromedriver's piped stdout");
    let chromedriver = KillOnDrop(child);
    // chromedriver says "… started successfully on port N." once it listens. The thread keeps
    // reading after that, so chromedriver never blocks on a full pipe.
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line
                .split_once("started successfully on port ")
                .and_then(|(_, rest)| rest.trim_end_matches('.').parse::<u16>().ok())
            {
                let _ = port_tx.send(port);
            }
        }
    });
    let port = port_rx
        .recv_timeout(PATIENCE)
        .expect("chromedriver says which port it listens on");
    (chromedriver, format!("http://127.0.0.1:{port}"))
}

/// A child process killed, and reaped, when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
