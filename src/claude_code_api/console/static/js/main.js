// The console's shell: signing in with an admin key, the navigation, the pages.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { ApiError, api, auth } from "./api.js";
import { Playground } from "./playground.js";
import { Conversations } from "./conversations.js";
import { Keys } from "./keys.js";
import { Usage } from "./usage.js";
import { Live } from "./live.js";

const PAGES = {
  playground: { title: "Playground", view: Playground },
  conversations: { title: "Conversations", view: Conversations },
  keys: { title: "Keys", view: Keys },
  usage: { title: "Usage", view: Usage },
  live: { title: "Live", view: Live },
};

function currentPage() {
  const name = location.hash.replace(/^#\/?/, "").split("/")[0];
  return PAGES[name] ? name : "playground";
}

function App() {
  const [session, setSession] = useState(null);
  const [problem, setProblem] = useState(null); // why we are not signed in
  const [page, setPage] = useState(currentPage());

  async function check() {
    try {
      setSession(await api("/ui/api/session"));
      setProblem(null);
    } catch (e) {
      setSession(null);
      setProblem(e instanceof ApiError ? { status: e.status, message: e.message } : { message: e.message });
    }
  }

  useEffect(() => {
    check();
    const onHash = () => setPage(currentPage());
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => { document.title = `${PAGES[page].title} · claude-code-api`; }, [page]);

  if (!session) {
    return problem ? html`<${SignIn} problem=${problem} onSignedIn=${check} />`
      : html`<p class="loading">Loading the console…</p>`;
  }
  const View = PAGES[page].view;
  return html`
    <header class="top">
      <a class="brand" href="#/playground">claude-code-api</a>
      <nav aria-label="Console">
        ${Object.entries(PAGES).map(([id, p]) => html`
          <a href=${`#/${id}`} aria-current=${id === page ? "page" : undefined}>${p.title}</a>`)}
      </nav>
      <span class="who">${session.admin ? `admin key: ${session.admin}` : "loopback, no key"}</span>
      ${auth.key && html`<button type="button" onClick=${() => { auth.clear(); check(); }}>Sign out</button>`}
    </header>
    <main id="main"><${View} models=${session.models} session=${session} /></main>`;
}

function SignIn({ problem, onSignedIn }) {
  const [key, setKey] = useState("");
  async function submit(e) {
    e.preventDefault();
    auth.set(key.trim());
    await onSignedIn();
  }
  const refused = auth.key && (problem.status === 401 || problem.status === 403);
  return html`<main class="signin">
    <form class="panel" onSubmit=${submit}>
      <h1>claude-code-api console</h1>
      <p>This gateway needs an admin key. Make one on the server with
        <code>claude-code-api keys create --name NAME --admin</code>. It is kept in this tab only
        (session storage) and sent as a header.</p>
      ${refused && html`<p class="error" role="alert">${problem.message}</p>`}
      ${!problem.status && html`<p class="error" role="alert">${problem.message}</p>`}
      <label>Admin key <input type="password" autocomplete="off" value=${key} required
        onInput=${(e) => setKey(e.target.value)} /></label>
      <button type="submit" class="primary">Sign in</button>
    </form>
  </main>`;
}

render(html`<${App} />`, document.getElementById("app"));
