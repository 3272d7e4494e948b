// Penny's search as you type. The search form works without this script; with it, the first
// page of results for what is in the box appears as you type (from /api/books, a quarter of a
// second after the last key), and the address changes to match, so that reloading the page
// shows the same results and Back goes to where you were before the search.
"use strict";

(function () {
  var form = document.querySelector("form.search");
  var region = document.getElementById("results");
  if (!form || !region || !window.fetch || !window.AbortController || !history.pushState) {
    return;
  }
  var input = form.querySelector("input[name=author]");
  var heading = document.querySelector("main h1");
  // The page as it came from the server, for Back to the address it came from.
  var original = {
    address: location.href,
    title: document.title,
    heading: heading ? heading.textContent : "",
    value: input.value,
    results: Array.prototype.slice.call(region.childNodes),
  };
  var WAIT_MS = 250;
  var timer = null;
  var running = null;
  // The first search typed on this page adds a history entry; the next ones replace it.
  var addedEntry = false;

  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      search(input.value, true);
    }, WAIT_MS);
  });

  window.addEventListener("popstate", function () {
    if (location.href === original.address) {
      restore();
      return;
    }
    var author = new URLSearchParams(location.search).get("author") || "";
    input.value = author;
    search(author, false);
  });

  function restore() {
    if (running) {
      running.abort();
      running = null;
    }
    showError(null);
    input.value = original.value;
    document.title = original.title;
    if (heading) {
      heading.textContent = original.heading;
    }
    region.replaceChildren.apply(region, original.results);
  }

  function search(typed, moveAddress) {
    var author = typed.trim();
    if (running) {
      running.abort();
      running = null;
    }
    if (!author) {
      return;
    }
    var controller = new AbortController();
    running = controller;
    var url = "/api/books?author=" + encodeURIComponent(author);
    fetch(url, { signal: controller.signal, headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (controller !== running) {
            return;
          }
          running = null;
          if (!response.ok) {
            showError(body.error || "Penny could not run this search.");
            return;
          }
          showError(null);
          showResults(author, body, response.headers);
          if (moveAddress) {
            moveTo("/searchresults?author=" + encodeURIComponent(author));
          }
        });
      })
      .catch(function () {
        // Aborted by a newer search, or the network is gone: the page stays as it was, and
        // the form still submits.
      });
  }

  function moveTo(address) {
    if (addedEntry) {
      history.replaceState(null, "", address);
    } else {
      history.pushState(null, "", address);
      addedEntry = true;
    }
  }

  // The form's message, as the server shows it for a search it refuses; null removes it.
  function showError(message) {
    var notice = document.getElementById("author-error");
    if (!message) {
      if (notice) {
        notice.remove();
      }
      input.removeAttribute("aria-invalid");
      input.setAttribute("aria-describedby", "author-hint");
      return;
    }
    if (!notice) {
      notice = element("p", { id: "author-error", class: "notice", role: "alert" });
      form.insertBefore(notice, document.getElementById("author-hint"));
    }
    notice.textContent = message;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", "author-error author-hint");
  }

  // The same results as the server's page, built from the API's answer.
  function showResults(author, books, headers) {
    document.title = "Author Search Results · Penny.com";
    if (heading) {
      heading.textContent = "Author Search Results";
    }
    var total = Number(headers.get("X-Total-Count") || books.length);
    var exact = headers.get("X-Total-Count-Exact") !== "false";
    // The summary stays the same element, so that a screen reader reads out each new count.
    var summary = region.querySelector(".summary");
    if (!summary) {
      summary = element("p", { class: "summary", "aria-live": "polite" });
    }
    summary.replaceChildren(element("strong", {}, "Books by " + author + ":"), " " + counted(books.length, total, exact));
    var parts = [summary];
    if (books.length === 0) {
      parts.push(
        element("div", { class: "empty" }, [
          element("p", {}, [element("strong", {}, "No author’s name starts with “" + author + "”.")]),
          element("p", {}, "Check the spelling, or type less: the start of a name is enough, " +
            "and case and accents do not count."),
        ])
      );
    } else {
      var next = nextPage(headers.get("Link"));
      if (next) {
        parts.push(pager(next, "Pages of results"));
      }
      parts.push(table(books));
      if (next) {
        parts.push(pager(next, "Pages of results, after the list"));
      }
    }
    region.replaceChildren.apply(region, parts);
  }

  function counted(shown, total, exact) {
    if (total === 0) {
      return "none.";
    }
    if (exact && shown === total) {
      return bookCount(total) + ".";
    }
    return "1–" + thousands(shown) + " of " + (exact ? "" : "more than ") + bookCount(total) + ".";
  }

  function bookCount(count) {
    return count === 1 ? "1 book" : thousands(count) + " books";
  }

  function thousands(n) {
    return Number(n).toLocaleString("en-US");
  }

  // The results page of the API's rel="next" link.
  function nextPage(link) {
    var match = /<([^>]*)>;\s*rel="next"/.exec(link || "");
    return match ? match[1].replace(/^\/api\/books\?/, "/searchresults?") : null;
  }

  function pager(next, label) {
    return element("nav", { class: "pages", "aria-label": label }, [
      element("span", { class: "button secondary", "aria-disabled": "true" }, "← Previous"),
      element("a", { class: "button secondary", rel: "next", href: next }, "Next →"),
    ]);
  }

  function table(list) {
    var head = element("tr", {}, [
      element("th", { class: "isbn", scope: "col" }, "ISBN"),
      element("th", { class: "author", scope: "col" }, "Author"),
      element("th", { class: "title", scope: "col" }, "Title"),
    ]);
    var rows = list.map(function (book) {
      return element("tr", {}, [
        element("td", { class: "isbn" }, book.isbn),
        element("td", { class: "author" }, book.author),
        element("td", { class: "title" }, book.title),
      ]);
    });
    return element("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Books" }, [
      element("table", {}, [element("thead", {}, [head]), element("tbody", {}, rows)]),
    ]);
  }

  // An element with attributes and children (text is text: never parsed as markup).
  function element(name, attributes, children) {
    var node = document.createElement(name);
    Object.keys(attributes).forEach(function (key) {
      node.setAttribute(key, attributes[key]);
    });
    [].concat(children === undefined ? [] : children).forEach(function (child) {
      node.append(child);
    });
    return node;
  }
})();
