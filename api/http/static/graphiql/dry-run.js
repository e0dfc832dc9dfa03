// Dry run while editing: a moment after the query, its variables or the key change, the page asks
// the API what the operation would cost and need (`extensions: {dryRun: true}`: nothing is run or
// disclosed; the dry run itself costs a point), and shows it next to GraphiQL's run button. app.js wires it in.
(function () {
  var DELAY_MS = 600;
  var state = { query: "", variables: "", sent: 0, text: "", detail: "", lacking: false };
  var listeners = new Set();
  var timer = null;

  function show(text, detail, lacking) {
    state.text = text;
    state.detail = detail || "";
    state.lacking = !!lacking;
    listeners.forEach(function (listener) { listener(Object.assign({}, state)); });
  }

  function summary(report) {
    var cost = report.requestedQueryCost === null ? "?" : report.requestedQueryCost;
    var text = "Dry run: " + cost + " of " + report.maximumQueryCost + " points";
    if (report.worstCaseQueryCost !== null && report.worstCaseQueryCost !== report.requestedQueryCost) {
      text += " (up to " + report.worstCaseQueryCost + ")";
    }
    var needs = report.scopes.length ? "Needs: " + report.scopes.join(", ") : "Needs no scope";
    var detail = needs + "\nFields: " + (report.fields.join(", ") || "none");
    if (report.missingScopes.length || report.missingFields.length) {
      text += " · your grants lack " + (report.missingScopes.join(", ") || "some fields");
      detail += "\nLacking: " + report.missingFields.join(", ");
    }
    if (report.problem) detail += "\n" + report.problem;
    return { text: text, detail: detail, lacking: report.missingFields.length > 0 };
  }

  function run() {
    var key = document.getElementById("api-key").value.trim();
    if (!key || !state.query.trim()) return show("");
    var variables = {};
    try { variables = JSON.parse(state.variables || "{}") || {}; } catch (ignored) { /* still editing */ }
    var sent = ++state.sent;
    window.fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
      body: JSON.stringify({ query: state.query, variables: variables, extensions: { dryRun: true } }),
    })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (sent !== state.sent) return; // an older answer: the editor has moved on
        var report = body.extensions && body.extensions.dryRun;
        if (body.extensions && body.extensions.cost && window.PartnerApi) window.PartnerApi.showCost(body.extensions.cost, "dry run");
        if (report) {
          var said = summary(report);
          return show(said.text, said.detail, said.lacking);
        }
        var error = (body.errors && body.errors[0]) || {};
        show("Dry run: " + (error.message || "no answer"), (error.extensions || {}).code, true);
      })
      .catch(function () { if (sent === state.sent) show(""); });
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(run, DELAY_MS);
  }

  function Status() {
    var pair = React.useState(Object.assign({}, state));
    React.useEffect(function () {
      listeners.add(pair[1]);
      return function () { listeners.delete(pair[1]); };
    }, []);
    var current = pair[0];
    if (!current.text) return null;
    return React.createElement(
      "div",
      { className: "dry-run" + (current.lacking ? " lacking" : ""), title: current.detail, role: "status" },
      current.text
    );
  }

  window.PartnerDryRun = {
    onEditQuery: function (query) { state.query = query || ""; schedule(); },
    onEditVariables: function (variables) { state.variables = variables || ""; schedule(); },
    refresh: schedule, // the key changed
    status: function () { return React.createElement(Status); },
  };
})();
