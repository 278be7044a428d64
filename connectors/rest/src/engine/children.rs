//! Children: a child stream reads its endpoint once per record of its parent stream
//! (parent-child fan-out), resuming at the parent page and record it stopped at.

use inlet_core::SourceError;
use serde_json::Value;
use url::Url;

use super::{
    Failure, Reader, Vars,
    pagination::next_token,
    records::{dotted, value_text},
};
use crate::{
    manifest::StreamDef,
    state::{Cursor, PageToken, ParentProgress, Progress},
};

impl Reader {
    /// Read the children of every parent record of the current slice.
    pub(super) async fn read_children(
        &mut self,
        p: &mut Progress,
        vars: &Vars,
    ) -> Result<(), Failure> {
        let Some(parent) = self.def.parent.clone() else {
            return Ok(());
        };
        let parent_def = self
            .inner
            .manifest
            .stream(&parent.stream)
            .cloned()
            .ok_or_else(|| SourceError::config("parent.stream", "unknown stream"))?;
        let pagination = self.inner.manifest.pagination_of(&parent_def).clone();
        let mut pos = p.parent.clone().unwrap_or(ParentProgress {
            page: PageToken::Start,
            index: 0,
        });
        let mut parent_pages = 0u64;
        loop {
            // The parent's own params, and the child's cursor when asked to.
            let lower = if parent.incremental {
                p.lower.clone()
            } else {
                None
            };
            let url = self.parent_url(&parent_def, vars, lower.as_ref(), &pos.page)?;
            parent_pages += 1;
            let page = self.fetch(&parent_def, &url, parent_pages, false).await?;
            let records: Value = serde_json::from_slice(&page.response.body[page.records.clone()])
                .map_err(|e| SourceError::data(&self.stream, e))?;
            let records: Vec<Value> = match records {
                Value::Array(a) => a,
                Value::Null => vec![],
                other => vec![other],
            };
            let next = next_token(&pagination, &page, records.len(), &pos.page, |field| {
                records.last().and_then(|r| value_text(dotted(r, field)?))
            })?
            .map(|t| self.scrub(t));
            for (i, record) in records.iter().enumerate().skip(pos.index) {
                let mut child_vars = vars.clone();
                for (var, path) in &parent.fields {
                    let v = dotted(record, path).and_then(value_text).ok_or_else(|| {
                        SourceError::data(
                            format!(
                                "stream `{}` parent `{}` record {i}",
                                self.stream, parent.stream
                            ),
                            format!("has no field `{path}` (parent.fields.{var})"),
                        )
                    })?;
                    child_vars.insert(format!("parent.{var}"), v);
                }
                let mut extra: Vec<(String, String)> = Vec::new();
                if let Some(fe) = &self.def.for_each
                    && let Some(col) = &fe.column
                {
                    extra.push((col.clone(), vars.get(&fe.var).cloned().unwrap_or_default()));
                }
                for (col, var) in &parent.columns {
                    extra.push((
                        col.clone(),
                        child_vars
                            .get(&format!("parent.{var}"))
                            .cloned()
                            .unwrap_or_default(),
                    ));
                }
                p.parent = Some(ParentProgress {
                    page: pos.page.clone(),
                    index: i,
                });
                self.walk(p, &child_vars, &extra).await?;
                p.next = PageToken::Start;
                p.pages = 0;
                p.parent = Some(ParentProgress {
                    page: pos.page.clone(),
                    index: i + 1,
                });
                self.state.current = Some(p.clone());
                self.checkpoint().await?;
            }
            match next {
                Some(token) => {
                    pos = ParentProgress {
                        page: token,
                        index: 0,
                    }
                }
                None => return Ok(()),
            }
        }
    }

    fn parent_url(
        &self,
        parent_def: &StreamDef,
        vars: &Vars,
        lower: Option<&Value>,
        token: &PageToken,
    ) -> Result<Url, SourceError> {
        let mut url = self.page_url(parent_def, vars, None, token)?;
        if let (Some(lower), Some(inc), PageToken::Start) = (lower, &self.def.incremental, token)
            && let Some(c) = Cursor::from_json(lower, self.cursor_type().as_ref())
        {
            url.query_pairs_mut()
                .append_pair(&inc.request_param, &c.param(inc.format));
        }
        Ok(url)
    }
}
