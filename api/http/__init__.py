"""The HTTP edge: the Starlette app, the GraphQL request pipeline, GraphiQL, metrics and logs."""
