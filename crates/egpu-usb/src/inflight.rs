//! Tag bookkeeping shared by the transport backends: tag allocation, results parked until
//! their waiter asks, and the sticky error (see the contract in [`crate::transport`]).

use std::collections::HashMap;

use crate::{Completion, Tag, UsbError};

/// What a backend knows about its transfers between submission and `wait`.
#[derive(Default)]
pub struct InFlight {
    next_tag: u64,
    pending: HashMap<Tag, Option<Result<Completion, UsbError>>>,
    sticky: Option<UsbError>,
}

impl InFlight {
    /// An empty table: no transfer in flight, no sticky error; tags start at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allocate the tag for a newly submitted transfer.
    pub fn begin(&mut self) -> Tag {
        let tag = Tag(self.next_tag);
        self.next_tag += 1;
        self.pending.insert(tag, None);
        tag
    }

    /// Record the outcome of `tag`; a failure latches the sticky error if none is latched.
    pub fn finish(&mut self, tag: Tag, result: Result<Completion, UsbError>) {
        if let Err(error) = &result {
            if self.sticky.is_none() {
                self.sticky = Some(error.duplicate());
            }
        }
        if let Some(slot) = self.pending.get_mut(&tag) {
            *slot = Some(result);
        }
    }

    /// Whether `tag` was submitted and not yet collected.
    pub fn contains(&self, tag: Tag) -> bool {
        self.pending.contains_key(&tag)
    }

    /// Whether `tag` has an outcome waiting to be collected.
    pub fn is_finished(&self, tag: Tag) -> bool {
        matches!(self.pending.get(&tag), Some(Some(_)))
    }

    /// Collect the outcome of a finished `tag`.
    ///
    /// A transfer's own failure is returned as itself; any other transfer's earlier failure
    /// turns this result into [`UsbError::Sticky`]. `None` means the tag is still running.
    pub fn collect(&mut self, tag: Tag) -> Option<Result<Completion, UsbError>> {
        match self.pending.get(&tag) {
            None => return Some(Err(UsbError::UnknownTag(tag))),
            Some(None) => return None,
            Some(Some(_)) => {}
        }
        let result = self.pending.remove(&tag).flatten()?;
        Some(match result {
            Err(own) => Err(own),
            Ok(completion) => match &self.sticky {
                Some(first) => Err(UsbError::Sticky { first: Box::new(first.duplicate()) }),
                None => Ok(completion),
            },
        })
    }

    /// The latched error, if any.
    pub fn sticky(&self) -> Option<&UsbError> {
        self.sticky.as_ref()
    }

    /// Forget every transfer and the sticky error (after SET_INTERFACE / reset).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.sticky = None;
    }

    /// Tags still in flight, oldest first.
    pub fn outstanding(&self) -> Vec<Tag> {
        let mut tags: Vec<Tag> =
            self.pending.iter().filter(|(_, r)| r.is_none()).map(|(t, _)| *t).collect();
        tags.sort();
        tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> UsbError {
        UsbError::Timeout { transfer: "bulk OUT".into(), after: std::time::Duration::from_secs(1) }
    }

    #[test]
    fn own_failure_is_reported_as_itself_and_then_sticks() {
        let mut inflight = InFlight::new();
        let a = inflight.begin();
        let b = inflight.begin();
        inflight.finish(a, Err(timeout()));
        inflight.finish(b, Ok(Completion::Out { length: 4 }));
        assert!(matches!(inflight.collect(a), Some(Err(UsbError::Timeout { .. }))));
        assert!(matches!(inflight.collect(b), Some(Err(UsbError::Sticky { .. }))));
        inflight.clear();
        let c = inflight.begin();
        inflight.finish(c, Ok(Completion::Out { length: 4 }));
        assert!(matches!(inflight.collect(c), Some(Ok(_))));
    }

    #[test]
    fn unwaited_failure_fails_the_next_wait() {
        let mut inflight = InFlight::new();
        let failed = inflight.begin();
        let next = inflight.begin();
        inflight.finish(failed, Err(timeout()));
        inflight.finish(next, Ok(Completion::In(vec![1, 2])));
        let err = inflight.collect(next).unwrap().unwrap_err();
        assert!(err.to_string().contains("earlier transfer failed"), "{err}");
    }

    #[test]
    fn unknown_and_running_tags() {
        let mut inflight = InFlight::new();
        let a = inflight.begin();
        assert!(inflight.collect(a).is_none());
        assert_eq!(inflight.outstanding(), vec![a]);
        assert!(matches!(inflight.collect(Tag(99)), Some(Err(UsbError::UnknownTag(Tag(99))))));
    }
}
