//! Transactions over one to five tables: the closure reads and writes
//! through [`TxTable`]s and may be run again if another writer got there
//! first, so it must do nothing but read and write them.

use super::error::EngineError;
use super::table::{Table, Value};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

/// Why a transaction's closure stopped: its own error `E` (the
/// transaction is abandoned), or the engine's (retried or reported).
#[derive(Debug)]
pub(crate) struct TxError<E>(ConflictableTransactionError<E>);

/// Abandon the transaction with `e`.
pub(crate) fn abort<E>(e: E) -> TxError<E> {
    TxError(ConflictableTransactionError::Abort(e))
}

/// An engine error inside a transaction (a conflict, or storage).
#[derive(Debug)]
pub(crate) struct TxFailed(UnabortableTransactionError);

impl<E> From<TxFailed> for TxError<E> {
    fn from(e: TxFailed) -> Self {
        TxError(e.0.into())
    }
}

/// One table as a transaction sees it.
pub(crate) struct TxTable<'a>(&'a TransactionalTree);

impl TxTable<'_> {
    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, TxFailed> {
        self.0
            .get(key.as_ref())
            .map(|v| v.map(Value::from))
            .map_err(TxFailed)
    }

    pub(crate) fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Value>, TxFailed> {
        self.0
            .insert(key.as_ref(), value.as_ref())
            .map(|v| v.map(Value::from))
            .map_err(TxFailed)
    }

    pub(crate) fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, TxFailed> {
        self.0
            .remove(key.as_ref())
            .map(|v| v.map(Value::from))
            .map_err(TxFailed)
    }

    /// A number never handed out before by this database, increasing.
    pub(crate) fn next_id(&self) -> Result<u64, TxFailed> {
        self.0.generate_id().map_err(|e| TxFailed(e.into()))
    }
}

fn finish<T, E: From<EngineError>>(r: Result<T, TransactionError<E>>) -> Result<T, E> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(s) => E::from(EngineError::from(s)),
    })
}

/// Tables that can be changed together in one transaction.
pub(crate) trait Transactional {
    type View<'a>;
    /// Run `f` over the tables atomically: all of its writes or none.
    fn transaction<T, E: From<EngineError>>(
        self,
        f: impl Fn(&Self::View<'_>) -> Result<T, TxError<E>>,
    ) -> Result<T, E>;
}

impl Transactional for &Table {
    type View<'a> = TxTable<'a>;
    fn transaction<T, E: From<EngineError>>(
        self,
        f: impl Fn(&TxTable<'_>) -> Result<T, TxError<E>>,
    ) -> Result<T, E> {
        finish(self.tree().transaction(|t| f(&TxTable(t)).map_err(|e| e.0)))
    }
}

/// Tuples of tables, changed together.
macro_rules! tuple_transactional {
    ($($t:ident),+) => {
        impl Transactional for ($(tuple_transactional!(@table $t),)+) {
            type View<'a> = ($(tuple_transactional!(@view 'a, $t),)+);
            #[allow(non_snake_case)]
            fn transaction<T, E: From<EngineError>>(
                self,
                f: impl Fn(&Self::View<'_>) -> Result<T, TxError<E>>,
            ) -> Result<T, E> {
                use sled::Transactional as _;
                let ($($t,)+) = self;
                finish(
                    ($($t.tree(),)+)
                        .transaction(|($($t,)+)| f(&($(TxTable($t),)+)).map_err(|e| e.0)),
                )
            }
        }
    };
    (@table $t:ident) => { &Table };
    (@view $a:lifetime, $t:ident) => { TxTable<$a> };
}

tuple_transactional!(A);
tuple_transactional!(A, B);
tuple_transactional!(A, B, C);
tuple_transactional!(A, B, C, D);
tuple_transactional!(A, B, C, D, E2);
