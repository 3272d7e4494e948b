//! Penny in a real browser: headless Chromium, driven over WebDriver by fantoccini, visits the
//! real `penny` binary serving its bundled demo database.

mod common;

use common::RunningPenny;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";
const MISSING: &str = "browser test: chromium/chromedriver not installed \
                       (apt-get install chromium chromium-driver)";
/// How long a page, an element or chromedriver may take: far more than they need.
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_searches_and_the_form_remembers_the_author() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.visit(search_for_ker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_are_styled_by_penny_css_and_load_nothing_from_elsewhere() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.visit(check_the_styling).await;
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
        "Previous author search: (None)"
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
    let penny_css = format!("{base}/static/penny.css");
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
    async fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).is_file() || !on_path(CHROMEDRIVER) {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{MISSING}");
            }
            // Straight to stderr: the test harness hides eprintln! output of passing tests.
            static BANNER: Once = Once::new();
            BANNER.call_once(|| {
                let rule = "=".repeat(78);
                let banner = format!("\n{rule}\nSKIPPED: {MISSING}\n{rule}\n");
                let _ = std::io::stderr().write_all(banner.as_bytes());
            });
            return None;
        }
        let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[], None);
        let base = format!("http://{}", penny.addr);
        let profile = tempfile::tempdir().expect("a temporary Chromium profile");
        let (chromedriver, webdriver) = start_chromedriver();

        let mut capabilities = Capabilities::new();
        let user_data_dir = format!("--user-data-dir={}", profile.path().display());
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", user_data_dir,
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .expect("chromedriver starts a Chromium session");
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

/// Starts chromedriver on a free port, waits until it listens, and returns it with its URL.
fn start_chromedriver() -> (KillOnDrop, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let mut chromedriver = KillOnDrop(child);
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = chromedriver.0.try_wait() {
            panic!("chromedriver exited before it listened: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (chromedriver, format!("http://127.0.0.1:{port}"))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A child process killed, and reaped, when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
