// GraphiQL for the partner API: the key typed above is kept in this tab (sessionStorage)
// and sent as a bearer token; a `query` URL parameter pre-fills the editor.
(function () {
  var STORAGE = "partner-api-key";
  var keyInput = document.getElementById("api-key");
  keyInput.value = sessionStorage.getItem(STORAGE) || "";
  keyInput.addEventListener("input", function () {
    sessionStorage.setItem(STORAGE, keyInput.value.trim());
  });

  var fetcher = GraphiQL.createFetcher({
    url: "/graphql",
    fetch: function (url, options) {
      var headers = Object.assign({}, options.headers, { Authorization: "Bearer " + keyInput.value.trim() });
      return window.fetch(url, Object.assign({}, options, { headers: headers }));
    },
  });

  var params = new URLSearchParams(window.location.search);
  var defaultQuery =
    params.get("query") ||
    "# Paste a demo key above (see demo-keys.json), then run:\n{\n  viewer {\n    name\n    grants { practiceId practiceName scopes expiresAt }\n  }\n  rateLimit { currentlyAvailable maximumAvailable restoreRate }\n}\n";

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  var generation = 0;
  function render() {
    // A new `key` remounts GraphiQL, which then fetches the schema again, with the new key.
    root.render(React.createElement(GraphiQL, {
      key: generation, fetcher: fetcher, defaultQuery: defaultQuery, shouldPersistHeaders: false,
    }));
  }
  // Enter in the key field reloads GraphiQL, so the schema documentation is fetched with the key.
  keyInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter") { generation += 1; render(); }
  });
  render();
})();
