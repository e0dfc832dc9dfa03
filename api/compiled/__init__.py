"""Compiled plans for registered documents and open keys' texts (ad_hoc.py): plan.py builds them;
an appointments page is read in one statement (page_plan.py, page_run.py), other plans run the
schema's resolvers (runner.py); serve.py charges, runs and settles them."""
