"""The access ledger: what each request disclosed, the exposure reports, retention."""
