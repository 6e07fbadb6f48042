//! `?page=&per_page=` and the `{items, page, per_page, total}` envelope every list uses.
//!
//! `per_page` above 100 is clamped to 100 and `page` above 1 000 000 to 1 000 000 (the
//! answer says so); `page` or `per_page` below 1 or not a whole number is 422 naming the
//! parameter.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::FieldErrors;

pub const DEFAULT_PER_PAGE: u32 = 20;
pub const MAX_PER_PAGE: u32 = 100;
/// The highest page served (an offset bound, far past any real list).
pub const MAX_PAGE: u32 = 1_000_000;

/// The raw parameters; kept as strings so a bad value is a 422 naming it. The document
/// types them as the integers they must be.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number (default 1; larger values are clamped to 1000000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1_000_000)]
    pub page: Option<String>,
    /// Items per page, 1..100 (default 20; larger values are clamped to 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub per_page: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: u32,
    pub per_page: u32,
}

impl Paging {
    pub fn limit(self) -> i64 {
        i64::from(self.per_page)
    }

    pub fn offset(self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }

    /// Index range of this page in a list of `len` items.
    pub fn range(self, len: usize) -> std::ops::Range<usize> {
        let start = usize::try_from(self.offset())
            .unwrap_or(usize::MAX)
            .min(len);
        let end = start.saturating_add(self.per_page as usize).min(len);
        start..end
    }
}

fn positive(raw: &str) -> Result<u64, String> {
    match raw.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number of at least 1".into()),
    }
}

impl PageParams {
    /// Validates into `errors` (so other query problems are reported alongside).
    pub fn parse(&self, errors: &mut FieldErrors) -> Paging {
        let page = self
            .page
            .as_deref()
            .and_then(|p| errors.check("page", positive(p)))
            .map_or(1, |p| {
                u32::try_from(p.min(u64::from(MAX_PAGE))).unwrap_or(MAX_PAGE)
            });
        let per_page = self
            .per_page
            .as_deref()
            .and_then(|p| errors.check("per_page", positive(p)))
            .map_or(DEFAULT_PER_PAGE, |p| {
                u32::try_from(p.min(u64::from(MAX_PER_PAGE))).unwrap_or(MAX_PER_PAGE)
            });
        Paging { page, per_page }
    }
}

/// One page of a collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub per_page: u32,
    pub total: i64,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, paging: Paging, total: i64) -> Self {
        Self {
            items,
            page: paging.page,
            per_page: paging.per_page,
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(page: Option<&str>, per_page: Option<&str>) -> Result<Paging, crate::error::ApiError> {
        let params = PageParams {
            page: page.map(str::to_owned),
            per_page: per_page.map(str::to_owned),
        };
        let mut errors = FieldErrors::default();
        let paging = params.parse(&mut errors);
        errors.finish().map(|()| paging)
    }

    #[test]
    fn defaults_clamping_and_errors() {
        assert_eq!(
            parse(None, None).ok(),
            Some(Paging {
                page: 1,
                per_page: 20
            })
        );
        assert_eq!(
            parse(Some("3"), Some("500")).ok(),
            Some(Paging {
                page: 3,
                per_page: 100
            })
        );
        assert!(parse(None, Some("0")).is_err());
        assert!(parse(None, Some("ten")).is_err());
        assert!(parse(Some("-1"), None).is_err());
        assert!(parse(Some("1.5"), None).is_err());
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let p = Paging {
            page: 2,
            per_page: 10,
        };
        assert_eq!(p.offset(), 10);
        assert_eq!(p.range(25), 10..20);
        assert_eq!(p.range(15), 10..15);
        assert_eq!(p.range(5), 5..5);
    }
}
