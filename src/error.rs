//! `AppError`: everything a handler can fail with, and the status each one gets. The top of the
//! service turns an error into a page or a JSON body; causes go to the log, never to a visitor.

use crate::db::DbError;
use crate::input::InputError;
use hyper::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    BadInput(#[from] InputError),
    #[error("Please type an author name.")]
    NoAuthor,
    #[error("There is no page at this address.")]
    NotFound,
    #[error("This address only answers GET and HEAD requests.")]
    MethodNotAllowed,
    #[error("database error")]
    Database(#[from] DbError),
    #[error("too many requests in flight")]
    Overloaded,
    /// RFC 9112 3.2: an HTTP/1.1 request must name its host, once.
    #[error("An HTTP/1.1 request must have a Host header.")]
    NoHost,
    #[error("A request must not have more than one Host header.")]
    ManyHosts,
    /// A transfer coding other than a single `chunked`, the only one Penny reads (hyper refuses
    /// a request whose last coding is not `chunked`, but not `chunked, chunked`).
    #[error("Penny reads no Transfer-Encoding but a single chunked.")]
    TransferEncoding,
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadInput(_)
            | AppError::NoAuthor
            | AppError::NoHost
            | AppError::ManyHosts
            | AppError::TransferEncoding => StatusCode::BAD_REQUEST,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Database(DbError::Query(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Database(_) | AppError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A heading and a sentence for the visitor. For a 5xx these are generic on purpose.
    pub fn explain(&self) -> (&'static str, String) {
        match self {
            AppError::BadInput(_)
            | AppError::NoAuthor
            | AppError::NoHost
            | AppError::ManyHosts
            | AppError::TransferEncoding => ("Bad request", self.to_string()),
            AppError::NotFound => ("Page not found", self.to_string()),
            AppError::MethodNotAllowed => ("Method not allowed", self.to_string()),
            AppError::Database(DbError::Query(_)) => (
                "Something went wrong",
                "Penny could not answer this request. Please try again later.".into(),
            ),
            AppError::Database(DbError::NotSetUp(_)) => (
                "No books yet",
                "Penny's database has no books yet. If this is your app, load them with `heroku \
                 run penny init-db` (or `psql \"$DATABASE_URL\" -f penny.sql`), then search \
                 again."
                    .into(),
            ),
            AppError::Database(_) => (
                "Service unavailable",
                "Penny cannot reach its database right now. Please try again in a moment.".into(),
            ),
            AppError::Overloaded => (
                "Service unavailable",
                "Penny is answering as many requests as it can right now. Please try again in a \
                 moment."
                    .into(),
            ),
        }
    }

    /// The whole cause chain on one line, for the log.
    pub fn cause_chain(&self) -> String {
        crate::logging::cause_chain(self)
    }

    /// An outage is logged by the database layer when it starts, not again for each request.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            AppError::Database(DbError::Unavailable(_) | DbError::NotSetUp(_))
        )
    }

    /// Whether the error gets a log line of its own: a 5xx, except an outage (logged when it
    /// starts and ends) and overload (its 503s show in the access log).
    pub fn is_logged(&self) -> bool {
        self.status().is_server_error()
            && !self.is_outage()
            && !matches!(self, AppError::Overloaded)
    }
}
