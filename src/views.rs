//! The pages, as maud templates compiled into the binary. Each view is a pure function of plain
//! data; maud escapes every value, so text from visitors or the database is never markup.

use crate::db::Book;
use maud::{DOCTYPE, Markup, html};

/// Morning before noon, afternoon from noon on, by the server's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Greeting {
    Morning,
    Afternoon,
}

impl Greeting {
    pub fn at_hour(hour: u32) -> Greeting {
        if hour < 12 {
            Greeting::Morning
        } else {
            Greeting::Afternoon
        }
    }

    fn word(self) -> &'static str {
        match self {
            Greeting::Morning => "morning",
            Greeting::Afternoon => "afternoon",
        }
    }
}

/// The home page.
pub fn home(greeting: Greeting, now: &str) -> Markup {
    let body = html! {
        h1 { "Good " (greeting.word()) " and welcome to Penny.com" }
        p.lead { "Find the books you are looking for by their author." }
        p { a.button href="/searchform" { "Click here to begin." } }
    };
    layout("Penny.com", body, now)
}

/// The author search form. `notice` is one of Penny's own messages, never visitor text.
pub fn search_form(prev_author: Option<&str>, notice: Option<&str>, now: &str) -> Markup {
    let body = html! {
        h1 { "Author Search" }
        @if let Some(notice) = notice {
            p #author-error .notice role="alert" { (notice) }
        }
        form.search action="/searchresults" method="get" {
            label for="author" { "Author name" }
            div.field {
                input #author type="text" name="author" maxlength="100" autocomplete="off"
                    aria-describedby=(if notice.is_some() { "author-error author-hint" } else { "author-hint" })
                    aria-invalid=[notice.is_some().then_some("true")];
                button type="submit" { "Search" }
            }
            p #author-hint .hint { "The start of a name is enough: \"ker\" finds Kernighan." }
        }
        p.previous {
            "Previous author search: "
            (prev_author.unwrap_or("(None)"))
        }
    };
    layout("Author Search · Penny.com", body, now)
}

/// Where the pages around a page of results are, if there are any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageLinks {
    pub previous: Option<String>,
    pub next: Option<String>,
}

/// A page of the books by `author`.
pub fn search_results(author: &str, books: &[Book], links: &PageLinks, now: &str) -> Markup {
    let body = html! {
        h1 { "Author Search Results" }
        p { "Books by " (author) ":" }
        @if books.is_empty() {
            p.none { "(None)" }
        } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Books" {
                table {
                    thead { tr { th scope="col" { "ISBN" } th scope="col" { "Author" } th scope="col" { "Title" } } }
                    tbody {
                        @for book in books {
                            tr { td { (book.isbn) } td { (book.author) } td { (book.title) } }
                        }
                    }
                }
            }
        }
        @if links.previous.is_some() || links.next.is_some() {
            nav.pages aria-label="Pages of results" {
                @if let Some(previous) = &links.previous {
                    a rel="prev" href=(previous) { "← Previous" }
                }
                @if let Some(next) = &links.next {
                    a rel="next" href=(next) { "Next →" }
                }
            }
        }
        p { a href="/searchform" { "Click here to do another author search." } }
    };
    layout("Author Search Results · Penny.com", body, now)
}

/// A page for an error: `heading` and `message` are Penny's own words, never a cause.
pub fn error_page(heading: &str, message: &str, now: &str) -> Markup {
    let body = html! {
        h1 { (heading) }
        p { (message) }
        p { a href="/" { "Back to the home page." } }
    };
    layout(&format!("{heading} · Penny.com"), body, now)
}

fn layout(title: &str, body: Markup, now: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/static/penny.css";
                link rel="icon" href="/favicon.ico" sizes="32x32";
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
            }
            body {
                header.site {
                    a.brand href="/" { "Penny.com" }
                }
                main { (body) }
                footer.site { p { "Today is " (now) "." } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(author: &str) -> Book {
        Book {
            isbn: "1".into(),
            author: author.into(),
            title: "<b>Title</b>".into(),
        }
    }

    #[test]
    fn the_greeting_turns_at_noon() {
        assert_eq!(Greeting::at_hour(11), Greeting::Morning);
        assert_eq!(Greeting::at_hour(12), Greeting::Afternoon);
        let page = home(Greeting::Afternoon, "now").into_string();
        assert!(page.contains("Good afternoon and welcome to Penny.com"));
        assert!(page.contains("Today is now."));
    }

    #[test]
    fn visitor_and_database_text_is_escaped() {
        let links = PageLinks::default();
        let page =
            search_results("<script>x</script>", &[book("<i>")], &links, "now").into_string();
        assert!(
            page.contains("Books by &lt;script&gt;x&lt;/script&gt;:"),
            "{page}"
        );
        assert!(page.contains("<td>&lt;i&gt;</td>"), "{page}");
        assert!(!page.contains("<script>"));
        let form = search_form(Some("\"><script>"), None, "now").into_string();
        assert!(
            form.contains("Previous author search: &quot;&gt;&lt;script&gt;"),
            "{form}"
        );
    }

    #[test]
    fn page_links_appear_only_where_there_is_a_page() {
        let none = search_results("x", &[book("a")], &PageLinks::default(), "now").into_string();
        assert!(!none.contains("rel=\"next\"") && !none.contains("rel=\"prev\""));
        let links = PageLinks {
            previous: None,
            next: Some("/searchresults?author=x&after=%7B%7D".into()),
        };
        let page = search_results("x", &[book("a")], &links, "now").into_string();
        assert!(
            page.contains(r#"<a rel="next" href="/searchresults?author=x&amp;after=%7B%7D">"#),
            "{page}"
        );
        assert!(!page.contains("rel=\"prev\""));
    }

    #[test]
    fn no_books_and_no_previous_search_read_none() {
        assert!(
            search_results("x", &[], &PageLinks::default(), "now")
                .into_string()
                .contains("(None)")
        );
        let form = search_form(None, None, "now").into_string();
        assert!(form.contains("Previous author search: (None)"));
        assert!(form.contains(r#"<label for="author">"#));
    }
}
