// GraphiQL for the partner API: the key typed above is kept in this tab (sessionStorage)
// and sent as a bearer token; a `query` URL parameter pre-fills the editor.
(function () {
  var STORAGE = "partner-api-key";
  var keyInput = document.getElementById("api-key");
  keyInput.value = sessionStorage.getItem(STORAGE) || "";
  keyInput.addEventListener("input", function () {
    sessionStorage.setItem(STORAGE, keyInput.value.trim());
  });

  // The key is read when each request is sent. It wins over an Authorization header typed in
  // the headers editor; left empty, the headers editor's one is sent as it is.
  function newFetcher() {
    return GraphiQL.createFetcher({
      url: "/graphql",
      fetch: function (url, options) {
        var key = keyInput.value.trim();
        var headers = Object.assign({}, options.headers);
        if (key) headers.Authorization = "Bearer " + key;
        return window.fetch(url, Object.assign({}, options, { headers: headers }));
      },
    });
  }

  var params = new URLSearchParams(window.location.search);
  var defaultQuery =
    params.get("query") ||
    "# Paste a demo key above (see demo-keys.json), then run:\n{\n  viewer {\n    name\n    grants { practiceId practiceName scopes expiresAt }\n  }\n  rateLimit { currentlyAvailable maximumAvailable restoreRate }\n}\n";

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  var schemaKey = null;
  function render() {
    // A new fetcher makes GraphiQL fetch the schema again (now with the key), keeping the
    // editors and the result pane. Without a key there is no schema to fetch (it would be a 401).
    var key = keyInput.value.trim();
    if (key === schemaKey) return;
    schemaKey = key;
    root.render(React.createElement(GraphiQL, {
      fetcher: newFetcher(),
      schema: key ? undefined : null,
      defaultQuery: defaultQuery,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      // The dry run of what is being edited, next to the run button (dry-run.js).
      onEditQuery: PartnerDryRun.onEditQuery,
      onEditVariables: PartnerDryRun.onEditVariables,
      toolbar: { additionalContent: PartnerDryRun.status() },
    }));
    PartnerDryRun.refresh();
  }
  keyInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter") render();
  });
  keyInput.addEventListener("change", render);
  PartnerDryRun.onEditQuery(defaultQuery);
  render();
})();
