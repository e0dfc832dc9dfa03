// GraphiQL for the partner API.
// - The key typed above is kept in this tab (sessionStorage) and sent as a bearer token.
// - The first tab, "Day", is the README's walkthrough: Enter in the key field loads the schema and
//   fills its variables with one of the key's practices and today's dates (unless you edited them).
// - A `?query=` link (and `?variables=`) opens in a tab of its own, even when tabs are stored.
// - The cost of the last operation and the budget left are shown under the run button
//   (`PartnerApi.showCost`, fed by each response's `extensions.cost`, or by anything else, e.g. a dry run).
// - The query builder is @graphiql/plugin-explorer, served locally like the rest.
(function () {
  var KEY_STORAGE = "partner-api-key";
  var FILLED_STORAGE = "partner-api-filled-variables";
  var keyInput = document.getElementById("api-key");
  keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  keyInput.addEventListener("input", function () {
    sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim());
  });

  // --- The cost display -----------------------------------------------------------------------
  var costListeners = [];
  var lastCost = null;

  // cost: an `extensions.cost` object ({requestedQueryCost, actualQueryCost, throttleStatus:
  // {currentlyAvailable, maximumAvailable}}); source: what it comes from ("last run", "dry run"...).
  function showCost(cost, source) {
    lastCost = cost ? { cost: cost, source: source || "last run" } : null;
    costListeners.forEach(function (listener) { listener(lastCost); });
  }

  function CostBadge() {
    var state = React.useState(lastCost);
    React.useEffect(function () {
      costListeners.push(state[1]);
      return function () { costListeners.splice(costListeners.indexOf(state[1]), 1); };
    }, []);
    var shown = state[0];
    if (!shown) return null;
    var cost = shown.cost, throttle = cost.throttleStatus || {};
    var points = cost.actualQueryCost != null ? cost.actualQueryCost : cost.requestedQueryCost;
    var title = shown.source + ": priced " + cost.requestedQueryCost + " points, charged " + cost.actualQueryCost +
      "; budget left " + throttle.currentlyAvailable + " of " + throttle.maximumAvailable;
    return React.createElement("div", { className: "cost-badge", title: title, "aria-label": title },
      React.createElement("span", { className: "cost-points" }, points + " pt"),
      React.createElement("span", { className: "cost-left" }, Math.floor(throttle.currentlyAvailable) + " left"));
  }

  window.PartnerApi = { showCost: showCost };

  // --- Requests ---------------------------------------------------------------------------------
  function send(url, options) {
    // The key is read when each request is sent. It wins over an Authorization header typed in the
    // headers editor; left empty, the headers editor's one is sent as it is.
    var key = keyInput.value.trim();
    var headers = Object.assign({}, options.headers);
    if (key) headers.Authorization = "Bearer " + key;
    return window.fetch(url, Object.assign({}, options, { headers: headers }));
  }

  function newFetcher() {
    return GraphiQL.createFetcher({
      url: "/graphql",
      fetch: function (url, options) {
        var introspection = /"operationName":"IntrospectionQuery"/.test(options.body || "");
        return send(url, options).then(function (response) {
          if (!introspection) {
            response.clone().json().then(function (body) {
              if (body && body.extensions && body.extensions.cost) showCost(body.extensions.cost, "last run");
            }, function () {});
          }
          return response;
        });
      },
    });
  }

  // --- The walkthrough's tabs -------------------------------------------------------------------
  function isoAt(day) {
    var offset = -day.getTimezoneOffset(), sign = offset >= 0 ? "+" : "-", abs = Math.abs(offset);
    function pad(n) { return String(n).padStart(2, "0"); }
    return day.getFullYear() + "-" + pad(day.getMonth() + 1) + "-" + pad(day.getDate()) + "T00:00:00" +
      sign + pad(Math.floor(abs / 60)) + ":" + pad(abs % 60);
  }
  var today = new Date();
  today.setHours(0, 0, 0, 0);
  var tomorrow = new Date(today.getFullYear(), today.getMonth(), today.getDate() + 1);
  function dayVariables(practiceId) {
    return JSON.stringify({ practiceId: practiceId, from: isoAt(today), to: isoAt(tomorrow) }, null, 2);
  }
  var PLACEHOLDER = dayVariables("paste a key above and press Enter");
  var DAY_QUERY =
    "# Today at one of your practices.\n" +
    "# Paste a key above, press Enter, run.\n" +
    "query Day($practiceId: ID!, $from: DateTime!, $to: DateTime!) {\n" +
    "  appointments(practiceId: $practiceId, from: $from, to: $to, first: 20) {\n" +
    "    edges { node { id startsAt status reason patient { firstName lastName phone } practitioner { lastName } } }\n" +
    "    pageInfo { hasNextPage endCursor }\n" +
    "  }\n" +
    "}\n";
  var ME_QUERY =
    "# Who you are, your practices and your budget.\n" +
    "query Me {\n" +
    "  viewer { name grants { practiceId practiceName scopes expiresAt } }\n" +
    "  rateLimit { currentlyAvailable maximumAvailable restoreRate }\n" +
    "}\n";

  // The active tab's variables, read live from its editor (GraphiQL's onEditVariables is debounced:
  // it could still hold our last fill while someone's edit is on screen). Ours to replace only while
  // they are the placeholder or what was filled in last, never what someone typed.
  var tabsStored = localStorage.getItem("graphiql:tabState") !== null;
  var filledVariables = null;
  function fillable() {
    var editor = document.querySelector(".graphiql-editor-tool .graphiql-editor .CodeMirror");
    if (!editor || !editor.CodeMirror) return false;
    var text = editor.CodeMirror.getValue();
    return text.trim() === PLACEHOLDER.trim() || text === sessionStorage.getItem(FILLED_STORAGE);
  }
  function fillPracticeFor(key) {
    if (!key) return;
    send("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/graphql-response+json" },
      body: JSON.stringify({ query: "query WalkthroughPractice { viewer { grants { practiceId } } }" }),
    }).then(function (response) { return response.json(); }).then(function (body) {
      var grants = body && body.data && body.data.viewer ? body.data.viewer.grants : [];
      if (!grants.length || !fillable() || keyInput.value.trim() !== key) return;
      filledVariables = dayVariables(grants[0].practiceId);
      sessionStorage.setItem(FILLED_STORAGE, filledVariables);
      draw();
    }, function () {});
  }

  // --- GraphiQL ---------------------------------------------------------------------------------
  var params = new URLSearchParams(window.location.search);
  var linkedQuery = params.get("query") || undefined;  // a link's query: its own tab, selected
  var linkedVariables = linkedQuery ? params.get("variables") || undefined : undefined;
  var explorer = GraphiQLPluginExplorer.explorerPlugin();
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  var fetcher = null;
  var schemaKey = null;

  function draw() {
    root.render(React.createElement(GraphiQL, {
      fetcher: fetcher,
      // Without a key there is no schema to fetch (it would be a 401).
      schema: schemaKey ? undefined : null,
      defaultTabs: [{ query: DAY_QUERY, variables: PLACEHOLDER }, { query: ME_QUERY }],
      query: linkedQuery,
      // GraphiQL shows the `variables` prop, not the first default tab's, on a first visit.
      variables: filledVariables || linkedVariables || (tabsStored || linkedQuery ? undefined : PLACEHOLDER),
      defaultEditorToolsVisibility: "variables",
      plugins: [explorer],
      // Under the run button: the last run's cost and budget, and the dry run of what is being edited.
      toolbar: {
        additionalContent: React.createElement(React.Fragment, null, React.createElement(CostBadge), PartnerDryRun.status()),
      },
      onEditQuery: PartnerDryRun.onEditQuery,
      onEditVariables: PartnerDryRun.onEditVariables,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
    }));
    PartnerDryRun.refresh();
  }

  function useKey() {
    // A new fetcher makes GraphiQL fetch the schema again (now with the key), keeping the editors
    // and the result pane.
    var key = keyInput.value.trim();
    if (key === schemaKey && fetcher) return;
    schemaKey = key;
    fetcher = newFetcher();
    draw();
    fillPracticeFor(key);
  }
  keyInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter") useKey();
  });
  keyInput.addEventListener("change", useKey);
  PartnerDryRun.onEditQuery(linkedQuery || DAY_QUERY);
  useKey();
})();
