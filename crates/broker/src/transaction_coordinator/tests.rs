//! Transaction coordinator state machine tests.
