// idgraph console: search, golden profile, identity graph (Cytoscape.js), explain.
//
// Vanilla JS, no build step. Every piece of server data reaches the DOM through
// textContent / attributes (the `h` helper), never through innerHTML.
'use strict';

(function () {
  const view = document.getElementById('view');
  const searchInput = document.getElementById('search-input');
  const searchForm = document.querySelector('[data-testid="search-form"]');
  const spinner = document.querySelector('[data-testid="search-spinner"]');

  /** For tests and debugging: the Cytoscape instance of the graph on screen. */
  window.idgraphConsole = { cy: null };

  const SEARCH_DEBOUNCE_MS = 150;
  const SEARCH_PAGE = 20;
  const GRAPH_LIMIT = 300;
  const SOURCES = ['web', 'mobile', 'crm', 'pos', 'contact_center', 'email', 'third_party'];
  const KIND_ORDER = ['customer_id', 'loyalty_id', 'email', 'phone', 'device_id', 'cookie_id', 'email_sha256', 'phone_sha256'];
  const KIND_LABEL = {
    customer_id: 'Customer id',
    loyalty_id: 'Loyalty id',
    email: 'Email',
    phone: 'Phone',
    email_sha256: 'Email (SHA-256)',
    phone_sha256: 'Phone (SHA-256)',
    device_id: 'Device',
    cookie_id: 'Cookie',
  };
  const KIND_COLOR = {
    customer_id: '#0f766e',
    loyalty_id: '#b45309',
    email: '#2563eb',
    phone: '#16a34a',
    device_id: '#7c3aed',
    cookie_id: '#db2777',
  };
  const OTHER_COLOR = '#64748b';

  // ---------------------------------------------------------------- DOM helpers

  /**
   * Creates an element. `attrs`: `class`, `text`, `on<event>` handlers, `dataset`, any
   * other attribute (set with setAttribute). Children: nodes, strings (text nodes),
   * arrays; null/undefined/false are skipped.
   */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, ...children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(el, ...c);
      else if (c instanceof Node) el.appendChild(c);
      else el.appendChild(document.createTextNode(String(c)));
    }
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function replace(el, ...children) {
    clear(el);
    append(el, children);
    return el;
  }

  /** A trait value as text (traits may be any JSON). */
  function asText(v) {
    if (v === null || v === undefined) return '';
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    return JSON.stringify(v);
  }

  /** `2026-03-01T10:00:00.000Z` → `2026-03-01 10:00:00 UTC`. */
  function fmtTime(iso) {
    if (!iso) return '—';
    const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?Z$/.exec(iso);
    return m ? `${m[1]} ${m[2]} UTC` : String(iso);
  }

  function fmtMillis(ms) {
    const d = new Date(Number(ms));
    return Number.isFinite(d.getTime()) ? fmtTime(d.toISOString()) : '—';
  }

  function time(iso) {
    return h('time', { datetime: iso || null, title: iso || null, text: fmtTime(iso) });
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many || one + 's'}`;
  }

  function kindLabel(kind) {
    return KIND_LABEL[kind] || kind;
  }

  function kindOrder(a, b) {
    const ia = KIND_ORDER.indexOf(a);
    const ib = KIND_ORDER.indexOf(b);
    if (ia !== ib) return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function splitKey(key) {
    const i = String(key).indexOf(':');
    return i < 0 ? ['', String(key)] : [key.slice(0, i), key.slice(i + 1)];
  }

  function chips(values, cls, testid) {
    const list = Array.from(values || []);
    if (!list.length) return h('span', { class: 'muted', text: '—' });
    return h('span', { class: 'chips', 'data-testid': testid || null },
      list.map((v) => h('span', { class: 'chip ' + (cls || ''), text: v })));
  }

  function kindBadge(kind) {
    return h('span', { class: 'kind-badge', style: `--kind:${KIND_COLOR[kind] || OTHER_COLOR}`, text: kind });
  }

  function identKey(key) {
    const [kind, value] = splitKey(key);
    return h('span', { class: 'ident' }, kindBadge(kind), h('span', { class: 'mono', text: value }));
  }

  function profileLink(id, label) {
    return h('a', { class: 'mono', href: '#/profiles/' + encodeURIComponent(id), text: label || id });
  }

  function fullName(profile) {
    const t = (profile && profile.traits) || {};
    const name = [asText(t.first_name), asText(t.last_name)].filter(Boolean).join(' ');
    return name;
  }

  function addressLines(address) {
    if (!address) return [];
    if (typeof address !== 'object') return [asText(address)];
    const a = address;
    const line2 = [a.postal_code, a.city].filter(Boolean).map(asText).join(' ');
    const line3 = [a.region, a.country].filter(Boolean).map(asText).join(', ');
    return [asText(a.street), line2, line3].filter(Boolean);
  }

  function errorBox(err, testid) {
    const e = err || {};
    return h('div', { class: 'error-box', role: 'alert', 'data-testid': testid || 'error' },
      h('strong', { text: e.code ? `${e.code}` : 'error' }),
      h('span', { text: ' ' + (e.message || String(err)) }),
      e.field ? h('span', { class: 'muted', text: ` (field: ${e.field})` }) : null);
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field;
    }
  }

  // ---------------------------------------------------------------- API key

  // The API key lives in this tab's sessionStorage only (gone when the tab closes) and is
  // sent as `Authorization: Bearer`. Without one, or when the server refuses it, the key
  // form is shown.
  const KEY_STORAGE = 'idgraph-api-key';
  const apiKey = () => sessionStorage.getItem(KEY_STORAGE) || '';

  function showKeyForm(message) {
    const input = h('input', { type: 'password', 'data-testid': 'key-input', autocomplete: 'off',
      placeholder: 'idg_…', 'aria-label': 'API key' });
    const form = h('form', { class: 'key-form', 'data-testid': 'key-form',
      onsubmit: (e) => {
        e.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY_STORAGE, key);
        current = { name: null };
        route();
      } },
      h('h2', { text: 'API key' }),
      h('p', { class: 'muted', text: message }),
      input,
      h('button', { type: 'submit', 'data-testid': 'key-submit', text: 'Use this key' }));
    if (viewCtrl) viewCtrl.abort();
    destroyGraph();
    current = { name: 'key' };
    replace(view, form);
    view.dataset.view = 'key';
    input.focus();
  }

  /**
   * Calls a JSON API path (GET unless `opts.method`; `opts.body` is sent as JSON); errors
   * become ApiError with the server's code/message/field. A 401 shows the key form unless
   * `opts.quiet`.
   */
  async function api(path, signal, opts) {
    const o = opts || {};
    let resp;
    try {
      const headers = { accept: 'application/json' };
      if (apiKey()) headers.authorization = `Bearer ${apiKey()}`;
      const init = { signal, headers, method: o.method || 'GET' };
      if (o.body !== undefined) {
        headers['content-type'] = 'application/json';
        init.body = JSON.stringify(o.body);
      }
      resp = await fetch(path, init);
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network_error', 'cannot reach the idgraph server');
    }
    const text = await resp.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (resp.status === 401 && !o.quiet) {
      showKeyForm(apiKey()
        ? 'The server does not accept this key. Paste a valid one (idgraph demo prints one).'
        : 'The API needs a key. Paste yours (idgraph demo prints one).');
    }
    if (!resp.ok) {
      const err = body && body.error ? body.error : {};
      throw new ApiError(resp.status, err.code || `http_${resp.status}`,
        err.message || `the server answered HTTP ${resp.status}`, err.field);
    }
    if (body === null) throw new ApiError(resp.status, 'invalid_response', 'the answer is not JSON');
    return body;
  }

  /** A steward's write: not tied to the view on screen, so never aborted by navigation. */
  const send = (method, path, body) => api(path, undefined, { method, body });

  const isAbort = (e) => e && e.name === 'AbortError';
  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- routing

  let current = { name: null };
  let viewCtrl = null; // aborts the fetches of the view on screen when it changes

  function parseHash() {
    const raw = location.hash.replace(/^#/, '') || '/';
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
    const m = /^\/profiles\/([^/]+)\/?$/.exec(path);
    if (m) {
      let id = m[1];
      try {
        id = decodeURIComponent(id);
      } catch (_) {
        /* keep it raw */
      }
      return { name: 'profile', id };
    }
    if (path === '/dashboard') return { name: 'dashboard' };
    if (path === '/review') return { name: 'review', after: params.get('after') || '', limit: params.get('limit') || '' };
    if (path === '/why-not') return { name: 'why-not', a: params.get('a') || '', b: params.get('b') || '' };
    if (path === '/search') {
      return {
        name: 'search',
        q: params.get('q') || '',
        source: params.get('source') || '',
        kind: params.get('kind') || '',
        city: params.get('city') || '',
      };
    }
    return { name: 'home' };
  }

  function newView(name) {
    if (viewCtrl) viewCtrl.abort();
    if (searchCtrl) searchCtrl.abort();
    spinner.hidden = true;
    viewCtrl = new AbortController();
    destroyGraph();
    destroyCharts();
    current = { name };
    clear(view);
    view.dataset.view = name;
    return viewCtrl.signal;
  }

  function route() {
    const r = parseHash();
    if (r.name === 'search') {
      if (searchInput.value !== r.q && document.activeElement !== searchInput) searchInput.value = r.q;
      if (current.name !== 'search') renderSearchView(r);
      else syncFilters(r);
      updateSearch(r);
    } else if (r.name === 'profile') {
      renderProfile(r.id);
    } else if (r.name === 'review') {
      renderReview(r);
    } else if (r.name === 'dashboard') {
      renderDashboard();
    } else if (r.name === 'why-not') {
      renderWhyNot(r);
    } else {
      renderHome();
    }
    stewardAccess();
    statsAccess();
    const titles = { profile: r.id, review: 'Review queue', 'why-not': 'Why not?', dashboard: 'Dashboard' };
    document.title = titles[r.name] ? `${titles[r.name]} · idgraph console` : 'idgraph console';
  }

  window.addEventListener('hashchange', route);

  // ---------------------------------------------------------------- search

  let debounceTimer = 0;
  let searchCtrl = null;
  let lastHits = [];
  let openFirstFor = null; // Enter pressed before the results of this query arrived

  function searchHash(r) {
    const p = new URLSearchParams();
    p.set('q', r.q || '');
    if (r.source) p.set('source', r.source);
    if (r.kind) p.set('kind', r.kind);
    if (r.city) p.set('city', r.city);
    return '#/search?' + p.toString();
  }

  /** Shows the search for `r`; while typing, the URL is replaced rather than pushed. */
  function goSearch(r) {
    const hash = searchHash(r);
    if (location.hash === hash) return;
    if (current.name === 'search') history.replaceState(null, '', hash);
    else history.pushState(null, '', hash);
    route();
  }

  function currentFilters() {
    const r = parseHash();
    return r.name === 'search' ? { source: r.source, kind: r.kind, city: r.city } : {};
  }

  searchInput.addEventListener('input', () => {
    clearTimeout(debounceTimer);
    debounceTimer = setTimeout(() => {
      goSearch(Object.assign(currentFilters(), { q: searchInput.value }));
    }, SEARCH_DEBOUNCE_MS);
  });

  searchInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowDown') {
      const first = view.querySelector('[data-testid="search-hit"] a');
      if (first) {
        ev.preventDefault();
        first.focus();
      }
    } else if (ev.key === 'Escape') {
      searchInput.value = '';
      searchInput.dispatchEvent(new Event('input'));
    }
  });

  searchForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearTimeout(debounceTimer);
    const r = parseHash();
    const q = searchInput.value;
    if (r.name === 'search' && r.q === q && lastHits.length) {
      location.hash = '#/profiles/' + enc(lastHits[0].profile_id);
    } else if (q.trim()) {
      openFirstFor = q;
      goSearch(Object.assign(currentFilters(), { q }));
    }
  });

  function renderHome() {
    const signal = newView('home');
    const stats = h('p', { class: 'muted', 'data-testid': 'health' });
    append(view, h('section', { class: 'card welcome' },
      h('h1', { text: 'Find a customer' }),
      h('p', { text: 'Start typing a name (typos are fine), an email, a phone number, a city or street, or an identifier such as ' },
        h('code', { text: 'email:bob@example.com' }), ' or a profile id ', h('code', { text: 'p_000000000001' }), '.'),
      h('ul', { class: 'tips' },
        h('li', { text: 'Results appear as you type; press Enter to open the first one, or ↓ to move through them.' }),
        h('li', { text: 'A profile shows the golden record, every identifier with its sources, devices, household and merge history.' }),
        h('li', { text: 'In the identity graph, click a link to see its provenance, or click two identifiers to see why they belong together.' })),
      stats));
    searchInput.focus();
    api('/health', signal).then((hl) => {
      replace(stats, `${Number(hl.profiles_created) || 0} profiles created from ${Number(hl.events) || 0} events.`);
    }).catch(() => {});
  }

  function renderSearchView(r) {
    newView('search');
    const filter = (name, el) => h('label', { class: 'filter' }, h('span', { text: name }), el);
    const select = (name, options, value) => h('select', { 'data-testid': `filter-${name}`, name },
      h('option', { value: '', text: 'any' }),
      options.map((o) => h('option', { value: o, text: o, selected: o === value })));
    const source = select('source', SOURCES, r.source);
    const kind = select('kind', KIND_ORDER, r.kind);
    const city = h('input', { type: 'text', name: 'city', 'data-testid': 'filter-city', placeholder: 'any', value: r.city || '' });
    const onFilter = () => goSearch({ q: searchInput.value, source: source.value, kind: kind.value, city: city.value.trim() });
    source.addEventListener('change', onFilter);
    kind.addEventListener('change', onFilter);
    let cityTimer = 0;
    city.addEventListener('input', () => {
      clearTimeout(cityTimer);
      cityTimer = setTimeout(onFilter, SEARCH_DEBOUNCE_MS);
    });
    const els = {
      summary: h('p', { class: 'summary', 'data-testid': 'search-summary', 'aria-live': 'polite' }),
      error: h('div', { 'data-testid': 'search-error-slot' }),
      exact: h('div', { 'data-testid': 'exact-match-slot' }),
      results: h('ol', { class: 'results', 'data-testid': 'search-results', onkeydown: moveInResults }),
      more: h('div', { class: 'more' }),
    };
    els.filters = { source, kind, city };
    current.search = els;
    append(view, h('section', { class: 'search-page' },
      h('div', { class: 'filters', 'data-testid': 'search-filters' },
        filter('Source', source), filter('Identifier kind', kind), filter('City', city)),
      els.summary, els.error, els.exact, els.results, els.more));
  }

  /** Back/forward between searches: the filter controls follow the URL. */
  function syncFilters(r) {
    const f = current.search && current.search.filters;
    if (!f) return;
    f.source.value = r.source || '';
    f.kind.value = r.kind || '';
    if (document.activeElement !== f.city) f.city.value = r.city || '';
  }

  /** ↑/↓ between result links; ↑ from the first one goes back to the search box. */
  function moveInResults(ev) {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
    const links = Array.from(view.querySelectorAll('[data-testid="search-hit"] a'));
    const i = links.indexOf(document.activeElement);
    if (i < 0) return;
    ev.preventDefault();
    if (ev.key === 'ArrowDown') (links[i + 1] || links[i]).focus();
    else if (i === 0) searchInput.focus();
    else links[i - 1].focus();
  }

  /**
   * A profile id (`p_…`) or an explicit `kind:value` identifier → a direct read that may
   * find one profile exactly (the search ranks whole emails and phones first by itself).
   */
  function exactCandidate(q) {
    const s = q.trim();
    if (/^p_\d{6,}$/.test(s)) return { path: `/v1/profiles/${enc(s)}`, what: 'profile id' };
    const m = /^([a-z][a-z0-9_]*):(\S.*)$/.exec(s);
    // Lookups are for service and admin keys; an agent's key is refused once (403) and
    // the console stops asking (the search ranks whole identifiers first by itself).
    if (m && lookupAllowed) return { path: `/v1/lookup?kind=${enc(m[1])}&value=${enc(m[2])}`, what: m[1], lookup: true };
    return null;
  }
  let lookupAllowed = true;

  function updateSearch(r) {
    const els = current.search;
    if (!els) return;
    if (searchCtrl) searchCtrl.abort();
    searchCtrl = new AbortController();
    const signal = searchCtrl.signal;
    clear(els.error);
    clear(els.exact);
    clear(els.more);
    lastHits = [];
    if (!r.q.trim()) {
      clear(els.results);
      replace(els.summary, 'Type to search.');
      spinner.hidden = true;
      return;
    }
    spinner.hidden = false;
    const exact = exactCandidate(r.q);
    if (exact) {
      api(exact.path, signal).then((profile) => {
        replace(els.exact, h('div', { class: 'exact', 'data-testid': 'exact-match' },
          h('p', { class: 'label', text: `Exact ${exact.what} match` }),
          h('ol', { class: 'results' }, hitItem({ profile_id: profile.profile_id, profile, matched: ['identifier'] }))));
      }).catch((e) => {
        // No exact match: nothing to show. A key whose role may not look up: stop trying.
        if (exact.lookup && e && e.status === 403) lookupAllowed = false;
      });
    }
    loadResults(r, 0, signal, els);
  }

  function loadResults(r, offset, signal, els) {
    const p = new URLSearchParams({ q: r.q, limit: String(SEARCH_PAGE), offset: String(offset) });
    if (r.source) p.set('source', r.source);
    if (r.kind) p.set('kind', r.kind);
    if (r.city) p.set('city', r.city);
    api('/v1/search?' + p.toString(), signal).then((res) => {
      const hits = Array.isArray(res.hits) ? res.hits : [];
      if (offset === 0) clear(els.results);
      lastHits = lastHits.concat(hits);
      if (openFirstFor === r.q) {
        openFirstFor = null;
        if (hits.length) {
          spinner.hidden = true;
          location.hash = '#/profiles/' + enc(hits[0].profile_id);
          return;
        }
      }
      append(els.results, hits.map(hitItem));
      const total = Number(res.total) || 0;
      // "gte": the looser (typo, prefix) matches were not needed for this page and not
      // counted, so the total is a lower bound.
      const atLeast = res.total_relation === 'gte';
      const count = atLeast ? `${total}+ profiles` : plural(total, 'profile');
      replace(els.summary, total === 0
        ? `No profile matches “${r.q}”.`
        : `${count} ${total === 1 && !atLeast ? 'matches' : 'match'} “${r.q}”` + (atLeast || total > lastHits.length ? ` · showing ${lastHits.length}` : ''));
      els.summary.dataset.total = String(total);
      els.summary.dataset.query = r.q; // which query the results on screen answer
      clear(els.more);
      if ((atLeast || lastHits.length < total) && offset + hits.length < 10000 && hits.length) {
        append(els.more, h('button', {
          type: 'button', class: 'button', 'data-testid': 'search-more', text: 'Show more',
          onclick: (ev) => {
            ev.currentTarget.disabled = true;
            loadResults(r, offset + hits.length, signal, els);
          },
        }));
      }
      spinner.hidden = true;
    }).catch((e) => {
      if (isAbort(e)) return;
      spinner.hidden = true;
      if (offset === 0) {
        clear(els.results);
        replace(els.summary, '');
      }
      const box = errorBox(e, 'search-error');
      box.dataset.query = r.q;
      replace(els.error, box);
    });
  }

  function hitItem(hit) {
    const p = hit.profile || {};
    const ids = p.identifiers || {};
    const name = fullName(p);
    const city = p.traits && p.traits.address && typeof p.traits.address === 'object' ? asText(p.traits.address.city) : '';
    const few = (list, n) => {
      const all = Array.from(list || []);
      return all.length > n ? all.slice(0, n).concat([`+${all.length - n} more`]) : all;
    };
    const contact = [];
    for (const e of few(ids.email, 2)) contact.push(h('span', { class: 'contact email', text: e }));
    for (const ph of few(ids.phone, 2)) contact.push(h('span', { class: 'contact phone', text: ph }));
    const matched = Array.isArray(hit.matched) ? hit.matched : [];
    return h('li', { class: 'hit', 'data-testid': 'search-hit', 'data-profile-id': hit.profile_id },
      h('a', { href: '#/profiles/' + enc(hit.profile_id), class: 'hit-link' },
        h('div', { class: 'hit-main' },
          h('span', { class: 'hit-name', 'data-testid': 'hit-name', text: name || 'Unnamed profile' }),
          city ? h('span', { class: 'hit-city', 'data-testid': 'hit-city', text: city }) : null,
          h('span', { class: 'hit-id mono', text: hit.profile_id })),
        contact.length ? h('div', { class: 'hit-contact', 'data-testid': 'hit-contact' }, contact) : null,
        h('div', { class: 'hit-meta' },
          matched.length ? h('span', { class: 'matched', 'data-testid': 'hit-matched' },
            'matched ', matched.map((m) => h('span', { class: 'chip match', text: m }))) : null,
          typeof hit.score === 'number' ? h('span', { class: 'score muted', text: `score ${hit.score.toFixed(2)}` }) : null)));
  }

  // ---------------------------------------------------------------- profile page

  function section(title, testid, ...body) {
    return h('section', { class: 'card', 'data-testid': testid },
      h('h2', { class: 'card-title', text: title }), ...body);
  }

  function loading(text) {
    return h('p', { class: 'muted loading', text: text || 'Loading…' });
  }

  function field(label, ...value) {
    return h('div', { class: 'field' }, h('dt', { text: label }), h('dd', {}, ...value));
  }

  async function renderProfile(requested) {
    const signal = newView('profile');
    const head = h('div', { 'data-testid': 'profile-slot' }, h('section', { class: 'card' }, loading('Loading profile…')));
    append(view, head);
    let profile;
    try {
      profile = await api(`/v1/profiles/${enc(requested)}`, signal);
    } catch (e) {
      if (isAbort(e)) return;
      replace(head, h('section', { class: 'card' },
        h('h1', { text: 'Profile not available' }), errorBox(e, 'profile-error'),
        h('p', {}, h('a', { href: '#/', text: '← back to search' }))));
      return;
    }
    const pid = profile.profile_id;
    current.profileId = pid;
    if (pid !== requested) {
      history.replaceState(null, '', '#/profiles/' + enc(pid));
    }
    const identifiersSlot = section('Identifiers', 'identifiers', loading());
    const devicesSlot = section('Devices', 'devices', loading());
    const householdSlot = section('Household', 'household', loading());
    const historySlot = section('Merge history', 'history', loading());
    // The page's state; `steward` turns on the admin's controls (see enableSteward).
    const ps = {
      pid, profile, requested, signal, head, identifiersSlot, nodes: null, nodesArrived: false,
      steward: false, pick: new Set(), splitOpen: false,
      stewardSlot: h('div', { 'data-testid': 'steward-slot' }),
      valuesSlot: h('div', { 'data-testid': 'values-slot' }),
    };
    current.ps = ps;
    const graph = graphSection(pid, signal, (nodes) => {
      ps.nodes = nodes;
      ps.nodesArrived = true;
      renderIdentifiers(ps);
    });
    replace(head, goldenCard(profile, requested));
    append(view, ps.stewardSlot, graph.el, identifiersSlot, ps.valuesSlot, devicesSlot,
      h('div', { class: 'grid-2' }, householdSlot, historySlot));
    graph.load(1);
    stewardAccess().then((access) => {
      if (access.steward && !signal.aborted) enableSteward(ps);
    });

    const fill = (slot, title, promise, render) => promise.then((data) => {
      replace(slot, h('h2', { class: 'card-title', text: title }), render(data));
    }).catch((e) => {
      if (isAbort(e)) return;
      replace(slot, h('h2', { class: 'card-title', text: title }), errorBox(e));
    });
    fill(devicesSlot, 'Devices', api(`/v1/profiles/${enc(pid)}/devices`, signal), devicesBody);
    fill(householdSlot, 'Household', api(`/v1/profiles/${enc(pid)}/household`, signal), (hh) => householdBody(hh, pid, signal));
    fill(historySlot, 'Merge history', api(`/v1/profiles/${enc(pid)}/history`, signal), (r) => historyBody(r, pid));
  }

  function goldenCard(p, requested) {
    const t = p.traits || {};
    const name = fullName(p);
    const merged = Array.from(p.merged_ids || []);
    const score = scoreOf(p);
    const extra = (t.extra && typeof t.extra === 'object' ? Object.entries(t.extra) : [])
      .filter(([k]) => !(score && k === 'score'));
    const idCount = Object.values(p.identifiers || {}).reduce((n, v) => n + (Array.isArray(v) ? v.length : 0), 0);
    return h('section', { class: 'card golden', 'data-testid': 'golden-profile', 'data-profile-id': p.profile_id },
      requested !== p.profile_id ? h('p', { class: 'notice', 'data-testid': 'merged-notice' },
        'Profile ', h('span', { class: 'mono', text: requested }), ' was merged into ',
        h('span', { class: 'mono', text: p.profile_id }), '; showing the surviving profile.') : null,
      h('div', { class: 'golden-head' },
        h('div', {},
          h('h1', { class: 'profile-name', 'data-testid': 'profile-name', text: name || 'Unnamed profile' }),
          h('p', { class: 'profile-id' },
            h('span', { class: 'mono', 'data-testid': 'profile-id', text: p.profile_id }),
            p.household_id ? h('a', { class: 'chip household-chip', href: '#household', text: `household ${p.household_id}`,
              onclick: (ev) => {
                ev.preventDefault();
                const el = view.querySelector('[data-testid="household"]');
                if (el) el.scrollIntoView({ behavior: 'smooth' });
              } }) : null)),
        h('div', { class: 'golden-stats' },
          stat(String(p.event_count ?? '—'), 'events'),
          stat(String(idCount), 'identifiers'),
          stat(String((p.devices || []).length), 'devices'),
          stat(String(merged.length), 'merged'))),
      h('dl', { class: 'fields' },
        field('Birth date', t.birth_date ? asText(t.birth_date) : h('span', { class: 'muted', text: '—' })),
        field('Address', ...(addressLines(t.address).length
          ? addressLines(t.address).map((l) => h('div', { text: l }))
          : [h('span', { class: 'muted', text: '—' })])),
        field('Sources', chips(p.sources, 'source', 'profile-sources')),
        field('First seen', time(p.first_seen)),
        field('Last seen', time(p.last_seen)),
        field('Merged ids', merged.length
          ? h('span', { class: 'chips', 'data-testid': 'merged-ids' }, merged.map((m) => h('span', { class: 'chip mono', text: m })))
          : h('span', { class: 'muted', text: 'none' })),
        extra.map(([k, v]) => field(k, asText(v)))),
      marketingPanel(p, score));
  }

  /** `traits.extra.score` when it is a model's score (`{value, model, label, scored_at}`). */
  function scoreOf(p) {
    const extra = p && p.traits && p.traits.extra;
    const s = extra && typeof extra === 'object' ? extra.score : null;
    return s && typeof s === 'object' && !Array.isArray(s) && s.value !== undefined && s.value !== null ? s : null;
  }

  /**
   * Consents (purpose, state, source, when), audiences and the score, when the API gave
   * any of them: a key whose answers are masked or limited sees only what it was sent.
   */
  function marketingPanel(p, score) {
    const consents = p.consents && typeof p.consents === 'object' && !Array.isArray(p.consents)
      ? Object.entries(p.consents).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : [];
    const audiences = Array.isArray(p.audiences) ? p.audiences : [];
    if (!consents.length && !audiences.length && !score) return null;
    const none = (text) => h('p', { class: 'muted', text });
    return h('div', { class: 'marketing', 'data-testid': 'marketing' },
      h('div', { class: 'marketing-part', 'data-testid': 'consents' },
        h('h3', { text: 'Consents' }),
        consents.length ? h('table', { class: 'table' },
          h('thead', {}, h('tr', {}, ['Purpose', 'State', 'Source', 'Stated'].map((c) => h('th', { text: c })))),
          h('tbody', {}, consents.map(([purpose, c]) => {
            const state = asText(c && c.state);
            return h('tr', { 'data-testid': 'consent-row', 'data-purpose': purpose },
              h('td', { class: 'mono', text: purpose }),
              h('td', {}, h('span', { class: 'chip ' + (state === 'granted' ? 'ok' : state === 'denied' ? 'danger' : ''), 'data-testid': 'consent-state', text: state || '—' })),
              h('td', {}, c && c.source ? h('span', { class: 'chip source', text: asText(c.source) }) : '—'),
              h('td', { class: 'nowrap' }, time(c && c.at)));
          }))) : none('No consent stated.')),
      h('div', { class: 'marketing-part' },
        h('h3', { text: 'Audiences' }),
        audiences.length
          ? h('span', { class: 'chips', 'data-testid': 'audiences' }, audiences.map((a) => h('span', { class: 'chip info mono', text: asText(a) })))
          : none('Not in any audience.')),
      h('div', { class: 'marketing-part' },
        h('h3', { text: 'Score' }),
        score ? h('dl', { class: 'fields', 'data-testid': 'profile-score' },
          field('Value', h('span', { class: 'stat-value', 'data-testid': 'score-value', text: asText(score.value) })),
          score.label !== undefined && score.label !== null ? field('Label', h('span', { 'data-testid': 'score-label', text: asText(score.label) })) : null,
          field('Model', h('span', { class: 'mono', 'data-testid': 'score-model', text: asText(score.model) || '—' })),
          field('Scored', time(score.scored_at))) : none('Not scored.')));
  }

  function stat(value, label) {
    return h('div', { class: 'stat' }, h('span', { class: 'stat-value', text: value }), h('span', { class: 'stat-label', text: label }));
  }

  function renderIdentifiers(ps) {
    if (!ps.nodesArrived) return;
    replace(ps.identifiersSlot, h('h2', { class: 'card-title', text: 'Identifiers' }), identifiersBody(ps.profile, ps.nodes, ps));
  }

  /**
   * Identifiers by kind; provenance from the graph's nodes when they have arrived. For a
   * steward, each has a checkbox that picks it to be split out.
   */
  function identifiersBody(profile, nodes, ps) {
    const byKey = new Map((nodes || []).map((n) => [n.id, n]));
    const kinds = Object.keys(profile.identifiers || {}).sort(kindOrder);
    if (!kinds.length) return h('p', { class: 'muted', text: 'No identifiers.' });
    const picking = Boolean(ps && ps.steward);
    const cols = (picking ? ['Split'] : []).concat(['Value', 'Sources', 'First seen', 'Last seen', 'Events']);
    return h('table', { class: 'table identifiers' },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { text: c })))),
      kinds.map((kind) => {
        const values = Array.from(profile.identifiers[kind] || []);
        return h('tbody', { 'data-testid': `identifiers-${kind}` },
          h('tr', { class: 'group-row' }, h('th', { colspan: String(cols.length) },
            kindBadge(kind), h('span', { text: `${kindLabel(kind)} · ${values.length}` }))),
          values.map((value) => {
            const key = `${kind}:${value}`;
            const n = byKey.get(key);
            return h('tr', { 'data-testid': 'identifier-row', 'data-key': key },
              picking ? h('td', { class: 'pick' }, h('input', {
                type: 'checkbox', 'data-testid': 'split-pick', 'data-key': key, checked: ps.pick.has(key),
                'aria-label': `Pick ${key} to move it out of this profile`,
                onchange: (ev) => togglePick(ps, key, ev.currentTarget.checked),
              })) : null,
              h('td', { class: 'mono value-cell' }, h('button', {
                type: 'button', class: 'linklike', title: 'Show in the graph', text: value,
                onclick: () => focusNode(key),
              })),
              h('td', {}, n ? chips(n.sources, 'source') : h('span', { class: 'muted', text: '—' })),
              h('td', { class: 'nowrap' }, n ? time(n.first_seen) : '—'),
              h('td', { class: 'nowrap' }, n ? time(n.last_seen) : '—'),
              h('td', { class: 'num', text: n ? String(n.event_count) : '—' }));
          }));
      }));
  }

  function devicesBody(r) {
    const devices = Array.isArray(r.devices) ? r.devices : [];
    if (!devices.length) return h('p', { class: 'muted', text: 'No devices or browsers.' });
    return h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, ['Device', 'Platform', 'Sources', 'First / last seen', 'Events', 'Also used by'].map((c) => h('th', { text: c })))),
      h('tbody', {}, devices.map((d) => h('tr', { 'data-testid': 'device-row' },
        h('td', {}, identKey(`${d.kind}:${d.value}`)),
        h('td', { text: d.platform || '—' }),
        h('td', {}, chips(d.sources, 'source')),
        h('td', { class: 'nowrap' }, time(d.first_seen), h('br'), time(d.last_seen)),
        h('td', { class: 'num', text: String(d.event_count ?? '—') }),
        h('td', {}, (d.shared_with || []).length
          ? h('span', { class: 'shared', 'data-testid': 'shared-with' }, h('span', { class: 'chip warn', text: 'shared' }), ' ',
            Array.from(d.shared_with).map((id, i) => [i ? ', ' : '', profileLink(id)]))
          : h('span', { class: 'muted', text: '—' }))))));
  }

  function householdBody(hh, pid, signal) {
    const members = Array.isArray(hh.members) ? hh.members : [];
    if (members.length < 2) return h('p', { class: 'muted', 'data-testid': 'no-household', text: 'Not part of a household: no other profile shares this address or a device.' });
    const names = new Map();
    const list = h('ul', { class: 'members', 'data-testid': 'household-members' }, members.map((m) => {
      const nameEl = h('span', { class: 'member-name', text: '' });
      names.set(m, nameEl);
      return h('li', { 'data-testid': 'household-member', 'data-profile-id': m },
        m === pid ? h('span', { class: 'mono', text: m }) : profileLink(m), ' ', nameEl,
        m === pid ? h('span', { class: 'chip', text: 'this profile' }) : null);
    }));
    for (const m of members.slice(0, 50)) {
      api(`/v1/profiles/${enc(m)}`, signal).then((p) => {
        const el = names.get(m);
        if (el) el.textContent = fullName(p) || 'Unnamed profile';
      }).catch(() => {});
    }
    const bonds = Array.isArray(hh.bonds) ? hh.bonds : [];
    return h('div', {},
      h('p', {}, h('span', { class: 'mono', 'data-testid': 'household-id', text: hh.household_id }),
        h('span', { class: 'muted', text: ` · ${plural(members.length, 'member')}${hh.truncated ? ' (truncated)' : ''}` })),
      list,
      h('h3', { class: 'sub', text: 'What binds them' }),
      bonds.length ? h('ul', { class: 'bonds', 'data-testid': 'household-bonds' }, bonds.map((b) => h('li', { 'data-testid': 'household-bond' },
        h('span', { class: 'chip ' + (b.type === 'shared_device' ? 'warn' : 'info'), text: b.type === 'shared_device' ? 'shared device' : b.type === 'shared_address' ? 'shared address' : asText(b.type) }),
        ' ', b.a === pid ? h('span', { class: 'mono', text: b.a }) : profileLink(b.a),
        ' ↔ ', b.b === pid ? h('span', { class: 'mono', text: b.b }) : profileLink(b.b),
        b.device ? [' via ', identKey(b.device)] : null)))
        : h('p', { class: 'muted', text: 'No bonds listed.' }));
  }

  function historyBody(r, pid) {
    const entries = Array.isArray(r.history) ? r.history.slice() : [];
    if (!entries.length) return h('p', { class: 'muted', text: 'No history.' });
    entries.reverse(); // newest first
    const link = (id) => (id === pid ? h('span', { class: 'mono', text: id }) : profileLink(id));
    return h('ol', { class: 'timeline', 'data-testid': 'history-list' }, entries.map((e) => h('li', { class: `tl-item tl-${e.kind}`, 'data-testid': 'history-entry' },
      h('div', { class: 'tl-head' },
        h('span', { class: `chip hist-${e.kind}`, text: String(e.kind).replace(/_/g, ' ') }),
        h('span', { class: 'muted', text: fmtMillis(e.at) })),
      h('div', { class: 'tl-body' },
        e.kind === 'merged' && e.survivor
          ? h('div', {}, (e.absorbed || []).map((a, i) => [i ? ', ' : '', link(a)]), ' merged into ', link(e.survivor))
          : (e.profiles || []).length ? h('div', {}, (e.profiles || []).map((a, i) => [i ? ', ' : '', link(a)])) : null,
        h('div', {}, h('span', { class: 'muted', text: 'rule ' }), h('span', { class: 'mono', text: e.rule || '—' }),
          e.event_id ? [h('span', { class: 'muted', text: ' · event ' }), h('span', { class: 'mono', text: e.event_id })] : null),
        (e.identifiers || []).length ? h('div', { class: 'chips' }, e.identifiers.map((k) => identKey(k))) : null,
        e.detail ? h('div', { class: 'muted', text: e.detail }) : null))));
  }

  // ---------------------------------------------------------------- identity graph

  let graphState = null; // { cy, pid, selection: [], ... } of the graph on screen

  function destroyGraph() {
    if (graphState && graphState.cy) graphState.cy.destroy();
    graphState = null;
    window.idgraphConsole.cy = null;
  }

  function focusNode(key) {
    if (!graphState || !graphState.cy) return;
    const n = graphState.cy.getElementById(key);
    if (!n || n.empty()) return;
    graphState.el.scrollIntoView({ behavior: 'smooth', block: 'start' });
    graphState.cy.animate({ center: { eles: n }, duration: 250 });
    onNodeTap(n);
  }

  function graphStyle() {
    return [
      {
        selector: 'node',
        style: {
          'background-color': 'data(color)',
          label: 'data(display)',
          'font-family': 'Inter, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
          'font-size': 10,
          color: '#1f2937',
          'text-wrap': 'wrap',
          'text-max-width': 160,
          'text-valign': 'bottom',
          'text-margin-y': 4,
          'text-outline-color': '#ffffff',
          'text-outline-width': 2,
          width: 24,
          height: 24,
          'border-width': 2,
          'border-color': '#ffffff',
        },
      },
      {
        selector: 'node[!in_profile]',
        style: {
          'background-opacity': 0.35,
          'border-color': '#94a3b8',
          'border-style': 'dashed',
          color: '#64748b',
        },
      },
      {
        selector: 'edge',
        style: {
          width: 'mapData(count, 1, 10, 1.5, 5)',
          'line-color': '#94a3b8',
          'curve-style': 'bezier',
          'overlay-padding': 4,
        },
      },
      {
        selector: 'edge[status = "refused"]',
        style: {
          'line-color': '#dc2626',
          'line-style': 'dashed',
          'line-dash-pattern': [6, 4],
          label: 'data(rule)',
          'font-size': 8,
          color: '#b91c1c',
          'text-rotation': 'autorotate',
          'text-margin-y': -9,
          'text-outline-color': '#ffffff',
          'text-outline-width': 2,
        },
      },
      { selector: '.faded', style: { opacity: 0.25 } },
      {
        selector: 'node.sel',
        style: { 'border-color': '#111827', 'border-width': 3, 'underlay-color': '#f59e0b', 'underlay-opacity': 0.45, 'underlay-padding': 6, 'underlay-shape': 'ellipse' },
      },
      {
        selector: 'node.split-pick',
        style: { 'border-color': '#b91c1c', 'border-width': 3, 'underlay-color': '#dc2626', 'underlay-opacity': 0.35, 'underlay-padding': 6, 'underlay-shape': 'ellipse' },
      },
      { selector: 'node.on-path', style: { 'border-color': '#f59e0b', 'border-width': 3 } },
      { selector: 'edge.on-path', style: { 'line-color': '#f59e0b', width: 5, 'z-index': 10 } },
      { selector: 'edge.picked', style: { 'line-color': '#0f172a', width: 4, 'z-index': 20 } },
      { selector: 'edge[status = "refused"].picked', style: { 'line-color': '#7f1d1d' } },
    ];
  }

  function graphSection(pid, signal, onNodes) {
    const counts = h('span', { class: 'graph-counts', 'data-testid': 'graph-counts', text: 'Loading…' });
    const depth = h('select', { 'data-testid': 'graph-depth', 'aria-label': 'Depth' },
      [0, 1, 2, 3, 4].map((d) => h('option', { value: String(d), text: d === 0 ? 'this profile only' : `+${d} hop${d > 1 ? 's' : ''} beyond`, selected: d === 1 })));
    const layoutSel = h('select', { 'data-testid': 'graph-layout', 'aria-label': 'Layout' },
      ['cose', 'breadthfirst', 'concentric'].map((l) => h('option', { value: l, text: l })));
    const canvas = h('div', { class: 'graph-canvas', 'data-testid': 'graph-canvas' });
    const notice = h('div', { class: 'graph-notice' });
    const selection = h('div', { class: 'selection', 'data-testid': 'explain-selection' });
    const details = h('div', { class: 'panel', 'data-testid': 'details-panel' });
    const legend = h('div', { class: 'legend' },
      KIND_ORDER.map((k) => h('span', { class: 'legend-item' }, h('span', { class: 'dot', style: `background:${KIND_COLOR[k]}` }), k)),
      h('span', { class: 'legend-item' }, h('span', { class: 'dot outside' }), 'other profile'),
      h('span', { class: 'legend-item' }, h('span', { class: 'line refused' }), 'refused link'));
    const el = h('section', { class: 'card graph-card', 'data-testid': 'graph-section' },
      h('div', { class: 'card-head' },
        h('h2', { class: 'card-title', text: 'Identity graph' }), counts,
        h('div', { class: 'toolbar' },
          h('label', {}, h('span', { class: 'muted', text: 'Show ' }), depth),
          h('label', {}, h('span', { class: 'muted', text: 'Layout ' }), layoutSel),
          h('button', { type: 'button', class: 'button small', text: 'Fit', onclick: () => graphState && graphState.cy && fitGraph(graphState.cy) }))),
      legend,
      h('div', { class: 'graph-body' },
        h('div', { class: 'graph-wrap' }, canvas, notice),
        h('aside', { class: 'graph-side' }, selection, details)));

    let loadCtrl = null;
    function load(d) {
      if (loadCtrl) loadCtrl.abort();
      loadCtrl = new AbortController();
      const sig = loadCtrl.signal;
      signal.addEventListener('abort', () => loadCtrl.abort(), { once: true });
      canvas.dataset.ready = 'false';
      replace(counts, 'Loading…');
      clear(notice);
      api(`/v1/profiles/${enc(pid)}/graph?depth=${d}&limit=${GRAPH_LIMIT}`, sig).then((g) => {
        const nodes = ((g.elements && g.elements.nodes) || []).map((n) => n.data);
        const edges = ((g.elements && g.elements.edges) || []).map((e) => e.data);
        if (onNodes) {
          onNodes(nodes);
          onNodes = null;
        }
        draw(nodes, edges, g.truncated);
      }).catch((e) => {
        if (isAbort(e)) return;
        replace(counts, '');
        replace(notice, errorBox(e, 'graph-error'));
        if (onNodes) {
          onNodes(null);
          onNodes = null;
        }
      });
    }

    function draw(nodes, edges, truncated) {
      if (graphState && graphState.cy) graphState.cy.destroy();
      const elements = [];
      for (const n of nodes) {
        const outside = !n.in_profile;
        elements.push({
          group: 'nodes',
          data: Object.assign({}, n, {
            color: KIND_COLOR[n.kind] || OTHER_COLOR,
            display: `${n.kind}\n${n.value}` + (outside ? `\n(${n.profile_id})` : ''),
          }),
        });
      }
      for (const e of edges) elements.push({ group: 'edges', data: Object.assign({}, e) });
      const cy = cytoscape({
        container: canvas,
        elements,
        style: graphStyle(),
        minZoom: 0.2,
        maxZoom: 3,
        boxSelectionEnabled: false,
        autounselectify: true,
      });
      graphState = { cy, pid, el, selection: [], explainCtrl: null, picked: null, selectionEl: selection, detailsEl: details };
      window.idgraphConsole.cy = cy;
      if (current.ps) for (const k of current.ps.pick) cy.getElementById(k).addClass('split-pick');
      cy.on('tap', 'node', (ev) => onNodeTap(ev.target));
      cy.on('tap', 'edge', (ev) => onEdgeTap(ev.target));
      cy.on('tap', (ev) => {
        if (ev.target === cy) clearPicked();
      });
      cy.on('mouseover', 'node, edge', () => { canvas.style.cursor = 'pointer'; });
      cy.on('mouseout', 'node, edge', () => { canvas.style.cursor = ''; });
      renderSelection();
      showHelp();
      if (!nodes.length) {
        replace(notice, h('p', { class: 'muted', text: 'No identifiers to draw.' }));
      } else if (truncated) {
        replace(notice, h('p', { class: 'notice small', text: `Only the first ${GRAPH_LIMIT} identifiers are drawn.` }));
      }
      cy.one('layoutstop', () => {
        if (layoutSel.value === 'cose') normalizeLayout(cy);
        fitGraph(cy);
        const nIn = cy.nodes('[?in_profile]').length;
        const refused = cy.edges('[status = "refused"]').length;
        replace(counts, `${plural(cy.nodes().length, 'identifier')} · ${plural(cy.edges().length, 'link')}` +
          (nIn !== cy.nodes().length ? ` · ${nIn} in this profile` : '') + (refused ? ` · ${refused} refused` : ''));
        counts.dataset.nodes = String(cy.nodes().length);
        counts.dataset.edges = String(cy.edges().length);
        canvas.dataset.ready = 'true';
      });
      cy.layout(layoutOptions(layoutSel.value, cy)).run();
    }

    depth.addEventListener('change', () => load(Number(depth.value)));
    layoutSel.addEventListener('change', () => {
      if (graphState && graphState.cy) {
        const cy = graphState.cy;
        cy.one('layoutstop', () => {
          if (layoutSel.value === 'cose') normalizeLayout(cy);
          fitGraph(cy);
        });
        cy.layout(layoutOptions(layoutSel.value, cy)).run();
      }
    });
    return { el, load };
  }

  /**
   * After a force layout: turn the drawing so its long axis is horizontal (the canvas is
   * wide) and scale it so the median link is LINK_PX long, so labels stay readable when fit.
   */
  const LINK_PX = 140;
  function normalizeLayout(cy) {
    const nodes = cy.nodes();
    if (nodes.length < 2) return;
    const ps = nodes.map((n) => n.position());
    const cx = ps.reduce((a, p) => a + p.x, 0) / ps.length;
    const cyy = ps.reduce((a, p) => a + p.y, 0) / ps.length;
    let sxx = 0;
    let syy = 0;
    let sxy = 0;
    for (const p of ps) {
      sxx += (p.x - cx) ** 2;
      syy += (p.y - cyy) ** 2;
      sxy += (p.x - cx) * (p.y - cyy);
    }
    const angle = 0.5 * Math.atan2(2 * sxy, sxx - syy);
    const lens = cy.edges().map((e) => {
      const a = e.source().position();
      const b = e.target().position();
      return Math.hypot(a.x - b.x, a.y - b.y);
    }).filter((l) => l > 0).sort((a, b) => a - b);
    const scale = lens.length ? LINK_PX / lens[Math.floor(lens.length / 2)] : 1;
    const cos = Math.cos(-angle);
    const sin = Math.sin(-angle);
    nodes.positions((n) => {
      const p = n.position();
      const x = p.x - cx;
      const y = p.y - cyy;
      return { x: (x * cos - y * sin) * scale, y: (x * sin + y * cos) * scale };
    });
  }

  function fitGraph(cy) {
    cy.fit(undefined, 40);
    if (cy.zoom() > 1.5) {
      cy.zoom(1.5);
      cy.center();
    }
  }

  function layoutOptions(name, cy) {
    if (name === 'breadthfirst') {
      const roots = cy.nodes('[?in_profile]').sort((a, b) => kindOrder(a.data('kind'), b.data('kind')));
      return { name, roots: roots.length ? roots.first() : undefined, directed: false, spacingFactor: 1.1, animate: false, padding: 30 };
    }
    if (name === 'concentric') {
      return { name, concentric: (n) => (n.data('in_profile') ? 10 - Math.max(0, KIND_ORDER.indexOf(n.data('kind'))) : 0), levelWidth: () => 1, animate: false, padding: 30, minNodeSpacing: 40 };
    }
    // Measured on demo profiles: strong repulsion keeps the closest two identifiers about
    // one link length apart in every run (weaker settings let nodes land on each other).
    return {
      name: 'cose', animate: false, padding: 30, randomize: true,
      nodeRepulsion: () => 400000, nodeOverlap: 20, gravity: 0.25, numIter: 2500,
      // Refused links get room for their rule label.
      idealEdgeLength: (e) => (e.data('status') === 'refused' ? 200 : 100),
      edgeElasticity: () => 100, componentSpacing: 100, initialTemp: 1000, coolingFactor: 0.99,
    };
  }

  function renderSelection() {
    const gs = graphState;
    if (!gs) return;
    const [a, b] = gs.selection;
    const slot = (label, key) => h('div', { class: 'sel-slot' + (key ? ' filled' : ''), 'data-testid': `selected-${label.toLowerCase()}` },
      h('span', { class: 'sel-label', text: label }), key ? identKey(key) : h('span', { class: 'muted', text: 'click an identifier' }));
    gs.selectionEl.dataset.a = a || '';
    gs.selectionEl.dataset.b = b || '';
    replace(gs.selectionEl,
      h('div', { class: 'panel-title' }, h('span', { text: 'Explain' }),
        (a || b) ? h('button', { type: 'button', class: 'button small', 'data-testid': 'clear-selection', text: 'Clear', onclick: clearSelection }) : null),
      slot('A', a), slot('B', b));
    gs.cy.nodes().removeClass('sel');
    for (const k of gs.selection) gs.cy.getElementById(k).addClass('sel');
  }

  function clearSelection() {
    const gs = graphState;
    if (!gs) return;
    if (gs.explainCtrl) gs.explainCtrl.abort();
    gs.selection = [];
    gs.cy.elements().removeClass('on-path faded');
    renderSelection();
    showHelp();
  }

  function showHelp() {
    const gs = graphState;
    if (!gs) return;
    replace(gs.detailsEl, h('div', { class: 'help', 'data-testid': 'graph-help' },
      h('p', {}, h('strong', { text: 'Click a link' }), ' to see its provenance: sources, how many events saw both identifiers, first and last seen, the events, and the rule that refused it (dashed red).'),
      h('p', {}, h('strong', { text: 'Click two identifiers' }), ' of this profile to see the chain of links, and the events behind each, that joins them.')));
  }

  function clearPicked() {
    const gs = graphState;
    if (!gs) return;
    gs.cy.edges().removeClass('picked');
    gs.picked = null;
  }

  function onNodeTap(node) {
    const gs = graphState;
    if (!gs) return;
    const d = node.data();
    const ps = current.ps;
    if (ps && ps.splitOpen && d.in_profile) {
      togglePick(ps, d.id, !ps.pick.has(d.id)); // splitting: a click picks or unpicks it
      return;
    }
    if (!d.in_profile) {
      showNodeDetails(d, h('p', { class: 'muted small', text: 'This identifier belongs to another profile; explain works between identifiers of this profile.' }));
      return;
    }
    const key = d.id;
    if (gs.selection.length === 1 && gs.selection[0] === key) {
      clearSelection(); // clicking A again unselects it
      return;
    }
    if (gs.selection.length === 2) clearSelection();
    gs.selection.push(key);
    renderSelection();
    if (gs.selection.length === 2) runExplain(gs.selection[0], gs.selection[1]);
    else showNodeDetails(d, h('p', { class: 'muted small', text: 'Selected as A: now click a second identifier to see how they are linked.' }));
  }

  function showNodeDetails(d, hint) {
    const gs = graphState;
    replace(gs.detailsEl, h('div', { 'data-testid': 'node-details', 'data-node-id': d.id },
      h('div', { class: 'panel-title' }, h('span', { text: 'Identifier' })),
      h('p', {}, identKey(d.id)),
      h('dl', { class: 'kv' },
        d.in_profile ? null : field('Profile', profileLink(d.profile_id)),
        d.platform ? field('Platform', d.platform) : null,
        field('Sources', chips(d.sources, 'source')),
        field('Events', String(d.event_count ?? '—')),
        field('First seen', time(d.first_seen)),
        field('Last seen', time(d.last_seen))),
      hint));
  }

  function provenance(e, testid) {
    const refused = e.status === 'refused';
    const ids = Array.isArray(e.event_ids) ? e.event_ids : [];
    return h('div', { class: 'provenance', 'data-testid': testid || null, 'data-edge-id': e.id, 'data-status': e.status },
      h('dl', { class: 'kv' },
        field('Status', h('span', { class: 'chip ' + (refused ? 'danger' : 'ok'), 'data-testid': 'prov-status', text: refused ? 'refused' : 'active' }),
          refused && e.rule ? h('div', { class: 'mono small', 'data-testid': 'prov-rule', text: `rule ${e.rule}` }) : null),
        field('Sources', chips(e.sources, 'source', 'prov-sources')),
        field('Seen together', h('span', { 'data-testid': 'prov-count', 'data-count': String(e.count), text: plural(Number(e.count) || 0, 'event') })),
        field('First seen', time(e.first_seen)),
        field('Last seen', time(e.last_seen)),
        field(ids.length < Number(e.count) ? `Events (first ${ids.length})` : 'Events',
          ids.length ? h('ul', { class: 'event-ids', 'data-testid': 'prov-events' }, ids.map((id) => h('li', { class: 'mono', text: id })))
            : h('span', { class: 'muted', text: '—' }))));
  }

  function onEdgeTap(edge) {
    const gs = graphState;
    if (!gs) return;
    const e = edge.data();
    gs.cy.edges().removeClass('picked');
    edge.addClass('picked');
    gs.picked = e.id;
    replace(gs.detailsEl, h('div', { 'data-testid': 'edge-panel', 'data-edge-id': e.id },
      h('div', { class: 'panel-title' }, h('span', { text: 'Link provenance' }),
        h('button', { type: 'button', class: 'button small', text: 'Close', onclick: () => { clearPicked(); showHelp(); } })),
      h('div', { class: 'endpoints' }, identKey(e.source), h('span', { class: 'muted', text: '↔' }), identKey(e.target)),
      provenance(e, 'edge-provenance')));
  }

  async function runExplain(a, b) {
    const gs = graphState;
    if (!gs) return;
    if (gs.explainCtrl) gs.explainCtrl.abort();
    gs.explainCtrl = new AbortController();
    replace(gs.detailsEl, loading('Explaining…'));
    let r;
    try {
      r = await api(`/v1/profiles/${enc(gs.pid)}/explain?${new URLSearchParams({ a, b }).toString()}`, gs.explainCtrl.signal);
    } catch (e) {
      if (isAbort(e)) return;
      replace(gs.detailsEl, errorBox(e, 'explain-error'));
      return;
    }
    if (graphState !== gs) return;
    const cy = gs.cy;
    clearPicked();
    cy.elements().removeClass('on-path faded');
    const steps = Array.isArray(r.edges) ? r.edges : [];
    if (!r.connected) {
      replace(gs.detailsEl, h('p', { class: 'notice', 'data-testid': 'explain-result', 'data-hops': '0', text: 'These identifiers are not joined by active links in this profile.' }));
      return;
    }
    const onPath = cy.collection();
    for (const k of r.path || []) onPath.merge(cy.getElementById(k));
    for (const s of steps) onPath.merge(cy.getElementById(s.id));
    onPath.addClass('on-path');
    cy.elements().difference(onPath).addClass('faded');
    replace(gs.detailsEl, h('div', { 'data-testid': 'explain-result', 'data-hops': String(steps.length) },
      h('div', { class: 'panel-title' }, h('span', { text: 'Why they are one person' })),
      h('p', { class: 'explain-summary', text: `${plural(steps.length, 'link')} join${steps.length === 1 ? 's' : ''} them:` }),
      h('ol', { class: 'path', 'data-testid': 'explain-path' }, steps.map((s, i) => h('li', { class: 'path-step', 'data-testid': 'explain-step', 'data-edge-id': s.id },
        h('div', { class: 'endpoints' }, h('span', { class: 'step-no', text: String(i + 1) }), identKey(s.from), h('span', { class: 'muted', text: '→' }), identKey(s.to)),
        provenance(s))))));
  }

  // ---------------------------------------------------------------- analytics dashboard

  // Whether this key may read the dashboard (`GET /v1/stats`: analysts and admins not
  // limited to some sources), asked once per key; the nav link shows only then.
  const statsNav = document.querySelector('[data-testid="stats-nav"]');
  let statsProbe = null; // { key, promise }

  function statsAccess() {
    const key = apiKey();
    if (statsProbe && statsProbe.key === key) return statsProbe.promise;
    const probe = { key, promise: null };
    probe.promise = api('/v1/stats', undefined, { quiet: true })
      .then(() => true, (e) => {
        if (!(e && e.status === 403) && statsProbe === probe) statsProbe = null;
        return false;
      })
      .then((ok) => {
        if (statsProbe === probe || !statsProbe) {
          statsNav.hidden = !ok;
          document.body.dataset.stats = ok ? 'yes' : 'no';
        }
        return ok;
      });
    statsProbe = probe;
    return probe.promise;
  }

  const charts = [];
  function destroyCharts() {
    while (charts.length) charts.pop().destroy();
  }

  const PALETTE = ['#2563eb', '#16a34a', '#d97706', '#dc2626', '#7c3aed', '#0891b2'];

  /** A Chart.js chart in a card; `data-testid` on the canvas, no animation. */
  function chartCard(title, testid, config, note) {
    const canvas = h('canvas', { 'data-testid': testid, role: 'img', 'aria-label': title });
    const card = h('section', { class: 'card chart-card' },
      h('h2', { text: title }),
      note ? h('p', { class: 'muted', text: note }) : null,
      h('div', { class: 'chart-box' }, canvas));
    append(view, card);
    if (typeof Chart === 'undefined') {
      append(card, h('p', { class: 'notice', text: 'The charting library did not load.' }));
      return;
    }
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options || {});
    charts.push(new Chart(canvas, config));
  }

  async function renderDashboard() {
    const signal = newView('dashboard');
    append(view, h('h1', { text: 'Identity graph dashboard' }));
    let s;
    try {
      s = await api('/v1/stats', signal);
    } catch (e) {
      if (!isAbort(e)) append(view, errorBox(e, 'dashboard-error'));
      return;
    }
    if (current.name !== 'dashboard') return;
    const snap = s.snapshot;
    append(view, h('p', { class: 'muted', 'data-testid': 'dashboard-meta' },
      snap ? `${plural(snap.profiles, 'profile')}, ${plural(snap.identifiers, 'identifier')}, as of ${fmtTime(snap.computed_at)}.`
        : 'The first pass over the profiles is still running; distributions appear when it is done.'));
    const days = s.daily.map((d) => d.day);
    const withTotals = s.daily.filter((d) => d.profiles !== null && d.profiles !== undefined);
    chartCard('Profiles and identifiers over time', 'chart-totals', {
      type: 'line',
      data: {
        labels: withTotals.map((d) => d.day),
        datasets: [
          { label: 'Profiles', data: withTotals.map((d) => d.profiles), borderColor: PALETTE[0] },
          { label: 'Identifiers', data: withTotals.map((d) => d.identifiers), borderColor: PALETTE[1] },
        ],
      },
    });
    chartCard('Changes per day', 'chart-daily', {
      type: 'bar',
      data: {
        labels: days,
        datasets: [
          ['Profiles created', 'created'], ['Merges', 'merges'], ['Splits', 'splits'],
          ['Conflicts (refused merges)', 'conflicts'], ['Deleted links', 'links_deleted'],
        ].map(([label, k], i) => ({ label, data: s.daily.map((d) => d[k]), backgroundColor: PALETTE[i] })),
      },
    });
    if (snap) {
      chartCard('Identifiers per profile', 'chart-per-profile', {
        type: 'bar',
        data: {
          labels: snap.identifiers_per_profile.map((b) => b.label),
          datasets: [{ label: 'Profiles', data: snap.identifiers_per_profile.map((b) => b.count), backgroundColor: PALETTE[0] }],
        },
      });
      chartCard('Household sizes', 'chart-households', {
        type: 'bar',
        data: {
          labels: snap.household_sizes.map((b) => b.label),
          datasets: [{ label: 'Households', data: snap.household_sizes.map((b) => b.count), backgroundColor: PALETTE[4] }],
        },
      }, `${plural(snap.profiles_in_households, 'profile')} share an address or a device with someone.`);
    }
    const ms = s.match_scores;
    if (ms) {
      const band = (b) => (b.from >= ms.threshold ? PALETTE[1] : b.to > ms.review_threshold ? PALETTE[2] : '#94a3b8');
      chartCard('Probable-match scores', 'chart-scores', {
        type: 'bar',
        data: {
          labels: ms.buckets.map((b) => b.from.toFixed(2)),
          datasets: [{ label: 'Candidate pairs', data: ms.buckets.map((b) => b.count), backgroundColor: ms.buckets.map(band) }],
        },
      }, `Merge threshold ${ms.threshold}, review from ${ms.review_threshold} (green: merged if corroborated, amber: review band).`);
    }
    if (snap) {
      const o = snap.source_overlap;
      append(view, h('section', { class: 'card' },
        h('h2', { text: 'Source overlap' }),
        h('p', { class: 'muted', text: 'Profiles seen by both sources (the diagonal: by the source).' }),
        h('table', { class: 'overlap', 'data-testid': 'source-overlap' },
          h('thead', {}, h('tr', {}, h('th', {}), o.sources.map((src) => h('th', { text: src })))),
          h('tbody', {}, o.sources.map((a, i) => h('tr', {},
            h('th', { text: a }),
            o.matrix[i].map((n, j) => h('td', { 'data-a': a, 'data-b': o.sources[j], text: String(n) }))))))));
      append(view, h('section', { class: 'card' },
        h('h2', { text: 'Largest profiles' }),
        h('p', { class: 'muted', text: 'Profiles with the most identifiers: a mega-profile here usually means a shared or junk identifier.' }),
        h('table', { 'data-testid': 'largest' },
          h('thead', {}, h('tr', {}, ['Profile', 'Identifiers', 'Events', 'Sources'].map((t) => h('th', { text: t })))),
          h('tbody', {}, snap.largest.map((p) => h('tr', { 'data-testid': 'largest-row', 'data-profile-id': p.profile_id },
            h('td', {}, profileLink(p.profile_id)),
            h('td', { text: String(p.identifiers) }),
            h('td', { text: String(p.events) }),
            h('td', { text: String(p.sources) })))))));
    }
  }

  // ---------------------------------------------------------------- steward (admin) role

  // What this key may do as a data steward, asked once per key: `GET /v1/review?limit=1`
  // answers 200 to an unscoped admin (review queue and everything else), 403 `scoped_key`
  // to an admin scoped to some sources (merge, split, values, pins, why-not on what it
  // sees; no queue), and 403 to every other role (no steward controls at all).
  const stewardNav = document.querySelector('[data-testid="steward-nav"]');
  const navReview = document.querySelector('[data-testid="nav-review"]');
  let stewardProbe = null; // { key, promise }

  function stewardAccess() {
    const key = apiKey();
    if (stewardProbe && stewardProbe.key === key) return stewardProbe.promise;
    const probe = { key, promise: null };
    const none = { review: false, steward: false };
    probe.promise = api('/v1/review?limit=1', undefined, { quiet: true })
      .then(() => ({ review: true, steward: true }), (e) => {
        if (e && e.status === 403) return e.code === 'scoped_key' ? { review: false, steward: true } : none;
        if (stewardProbe === probe) stewardProbe = null; // no answer about the role: ask again later
        return none;
      })
      .then((access) => {
        if (stewardProbe === probe || !stewardProbe) {
          stewardNav.hidden = !access.steward;
          navReview.hidden = !access.review;
          // For tests: the role is known (`yes`, `scoped` or `no`).
          document.body.dataset.steward = access.review ? 'yes' : access.steward ? 'scoped' : 'no';
        }
        return access;
      });
    stewardProbe = probe;
    return probe.promise;
  }

  /** The rule a `409 rule_conflict` message names (`... send "override": ["rule"]`). */
  function conflictRule(message) {
    const m = /"override": \["([^"]+)"\]/.exec(message || '') || /break rule ([^\s;,]+)/.exec(message || '');
    return m ? m[1] : '';
  }

  /**
   * The form of a steward's write: optional fields (`body`), a reason (required, recorded in
   * history), then `run(reason, overrides)`. A `409 rule_conflict` shows the server's
   * message and offers to retry overriding the rule it names (prefilled, editable).
   * `data-state`: idle, busy, conflict, error.
   */
  function actionForm(o) {
    const reason = h('input', { type: 'text', class: 'reason', 'data-testid': 'reason-input', maxlength: '1000',
      placeholder: 'Reason (recorded in the history)', 'aria-label': 'Reason' });
    const conflict = h('div', { 'data-testid': 'conflict-slot' });
    const status = h('div', { class: 'action-status', 'aria-live': 'polite' });
    const submit = h('button', { type: 'submit', class: 'button primary', 'data-testid': 'action-confirm', text: o.confirm });
    let overrideInput = null;
    const form = h('form', {
      class: 'action-form', 'data-testid': o.testid, 'data-state': 'idle',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const why = reason.value.trim();
        if (!why) {
          form.dataset.state = 'error';
          replace(status, errorBox({ code: 'reason_required', message: 'Give a reason: it is recorded in the history with your key name.' }, 'action-error'));
          reason.focus();
          return;
        }
        const overrides = overrideInput ? overrideInput.value.split(/[\s,]+/).filter(Boolean) : [];
        submit.disabled = true;
        form.dataset.state = 'busy';
        replace(status, loading('Saving…'));
        let out;
        try {
          out = await o.run(why, overrides);
        } catch (e) {
          submit.disabled = false;
          clear(status);
          if (e && e.status === 409 && e.code === 'rule_conflict') {
            showConflict(e);
          } else {
            form.dataset.state = 'error';
            replace(status, errorBox(e, 'action-error'));
          }
          return;
        }
        clear(status);
        o.done(out);
      },
    },
    o.title ? h('div', { class: 'panel-title', text: o.title }) : null,
    o.body || null,
    h('div', { class: 'form-row' },
      h('label', { class: 'filter grow' }, h('span', { text: 'Reason' }), reason),
      submit,
      o.cancel ? h('button', { type: 'button', class: 'button', 'data-testid': 'action-cancel', text: 'Cancel', onclick: o.cancel }) : null),
    conflict, status);

    function showConflict(e) {
      form.dataset.state = 'conflict';
      overrideInput = h('input', { type: 'text', 'data-testid': 'override-input', value: conflictRule(e.message),
        'aria-label': 'Rules to override', class: 'mono' });
      replace(conflict, h('div', { class: 'conflict', 'data-testid': 'rule-conflict' },
        errorBox(e, 'conflict-error'),
        h('div', { class: 'form-row' },
          h('label', { class: 'filter grow' }, h('span', { text: 'Override rule' }), overrideInput)),
        h('p', { class: 'muted small', text: 'Overriding is recorded in the history with your reason. Confirm again to apply it.' })));
      submit.textContent = 'Override and retry';
      submit.dataset.override = 'true';
    }
    setTimeout(() => reason.focus(), 0);
    return form;
  }

  /** A request body with `override` only when some rule is overridden. */
  function withOverride(body, overrides) {
    return overrides.length ? Object.assign(body, { override: overrides }) : body;
  }

  /** Shows profile `id` (again, when it is the one on screen). */
  function goProfile(id) {
    const hash = '#/profiles/' + enc(id);
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  // The answer of the last merge or split, shown on the profile page it led to.
  let flash = null; // { pid, kind: 'merge'|'split', answer }

  function flashBox(f) {
    const a = f.answer || {};
    const links = (ids) => Array.from(ids || []).map((id, i) => [i ? ', ' : '', profileLink(id)]);
    const overridden = Array.isArray(a.overridden) && a.overridden.length
      ? h('div', { class: 'small' }, 'Overridden: ', a.overridden.map((r) => h('span', { class: 'chip mono', text: r }))) : null;
    if (f.kind === 'merge') {
      const undo = Array.isArray(a.undo) ? a.undo : [];
      return h('div', { class: 'result-box', role: 'status', 'data-testid': 'steward-result', 'data-kind': 'merge', 'data-profile-id': a.profile_id },
        h('strong', { text: 'Merged. ' }), links(a.absorbed), ' merged into ', profileLink(a.profile_id), '.',
        undo.length ? h('div', { class: 'small' }, 'To undo, split into: ',
          undo.map((g, i) => h('span', { class: 'undo-group', 'data-testid': 'undo-group' }, i ? ' · ' : '', g.map((k) => identKey(k))))) : null,
        overridden);
    }
    return h('div', { class: 'result-box', role: 'status', 'data-testid': 'steward-result', 'data-kind': 'split', 'data-profile-id': a.profile_id },
      h('strong', { text: 'Split. ' }), `${plural((a.profiles || []).length, 'profile')}: `, links(a.profiles),
      ` · ${plural(Number(a.links_cut) || 0, 'link')} cut · ${plural(Number(a.links_added) || 0, 'link')} added.`,
      overridden);
  }

  /** Turns on the steward's controls of the profile page: actions, split picks, values. */
  function enableSteward(ps) {
    ps.steward = true;
    ps.panel = h('div', { class: 'steward-panel', 'data-testid': 'steward-panel' });
    const result = flash && flash.pid === ps.pid ? flashBox(flash) : null;
    flash = null;
    const firstKey = Object.entries(ps.profile.identifiers || {}).sort((x, y) => kindOrder(x[0], y[0]))
      .flatMap(([k, vs]) => Array.from(vs || []).map((v) => `${k}:${v}`))[0] || '';
    replace(ps.stewardSlot, h('section', { class: 'card steward', 'data-testid': 'steward-actions' },
      h('div', { class: 'card-head' },
        h('h2', { class: 'card-title', text: 'Steward' }),
        h('div', { class: 'toolbar' },
          h('button', { type: 'button', class: 'button small', 'data-testid': 'steward-merge', text: 'Merge with…',
            onclick: () => { closeSplit(ps); replace(ps.panel, mergePanel(ps)); } }),
          h('button', { type: 'button', class: 'button small', 'data-testid': 'steward-split', text: 'Split…',
            onclick: () => openSplit(ps) }),
          h('a', { class: 'button small', 'data-testid': 'steward-why-not', href: '#/why-not?' + new URLSearchParams({ a: firstKey }).toString(), text: 'Why not…?' }))),
      result, ps.panel));
    renderIdentifiers(ps);
    replace(ps.valuesSlot, section('Value history', 'values', loading()));
    api(`/v1/profiles/${enc(ps.pid)}/values`, ps.signal).then((v) => renderValues(ps, v)).catch((e) => {
      if (isAbort(e)) return;
      replace(ps.valuesSlot, section('Value history', 'values', errorBox(e, 'values-error')));
    });
  }

  // ---- merge

  function mergePanel(ps) {
    const other = h('input', { type: 'text', class: 'mono', 'data-testid': 'merge-target', placeholder: 'p_000000000042',
      'aria-label': 'Profile to merge with', autocomplete: 'off' });
    const query = h('input', { type: 'text', 'data-testid': 'merge-search', placeholder: 'or find it: name, email, phone…',
      'aria-label': 'Find the profile to merge with', autocomplete: 'off' });
    const hits = h('ul', { class: 'pick-list', 'data-testid': 'merge-hits' });
    let timer = 0;
    let ctrl = null;
    query.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (ctrl) ctrl.abort();
        const q = query.value.trim();
        if (!q) {
          clear(hits);
          return;
        }
        ctrl = new AbortController();
        api('/v1/search?' + new URLSearchParams({ q, limit: '6' }).toString(), ctrl.signal).then((res) => {
          const list = (Array.isArray(res.hits) ? res.hits : []).filter((x) => x.profile_id !== ps.pid);
          replace(hits, list.length ? list.map((x) => h('li', { 'data-testid': 'merge-hit', 'data-profile-id': x.profile_id },
            h('button', { type: 'button', class: 'button small', text: 'Pick', onclick: () => { other.value = x.profile_id; } }),
            ' ', h('span', { text: fullName(x.profile) || 'Unnamed profile' }), ' ', h('span', { class: 'mono muted', text: x.profile_id })))
            : h('li', { class: 'muted', text: 'No other profile matches.' }));
        }).catch((e) => {
          if (!isAbort(e)) replace(hits, h('li', {}, errorBox(e)));
        });
      }, SEARCH_DEBOUNCE_MS);
    });
    return actionForm({
      testid: 'merge-form',
      title: 'Merge another profile with this one',
      confirm: 'Merge',
      body: h('div', {},
        h('p', { class: 'muted small', text: 'The oldest of the two survives; the other is absorbed (its id then leads to the survivor). The answer lists how to undo it.' }),
        h('div', { class: 'form-row' },
          h('label', { class: 'filter' }, h('span', { text: 'Profile id' }), other),
          h('label', { class: 'filter grow' }, h('span', { text: 'Find' }), query)),
        hits),
      run: (reason, overrides) => {
        const id = other.value.trim();
        if (!id) return Promise.reject(new ApiError(400, 'invalid_parameter', 'Name the profile to merge with (its id, or pick it from the search).', 'profiles[1]'));
        return send('POST', '/v1/profiles/merge', withOverride({ profiles: [ps.pid, id], reason }, overrides));
      },
      done: (out) => {
        flash = { pid: out.profile_id, kind: 'merge', answer: out };
        goProfile(out.profile_id);
      },
      cancel: () => clear(ps.panel),
    });
  }

  // ---- split

  function togglePick(ps, key, on) {
    if (on) ps.pick.add(key);
    else ps.pick.delete(key);
    const box = view.querySelector(`[data-testid="split-pick"][data-key="${CSS.escape(key)}"]`);
    if (box) box.checked = on;
    if (graphState && graphState.cy) graphState.cy.getElementById(key).toggleClass('split-pick', on);
    if (on && !ps.splitOpen) openSplit(ps);
    else if (ps.renderPick) ps.renderPick();
  }

  function closeSplit(ps) {
    ps.splitOpen = false;
    ps.renderPick = null;
    for (const k of Array.from(ps.pick)) togglePick(ps, k, false);
    clear(ps.panel);
  }

  function openSplit(ps) {
    ps.splitOpen = true;
    const picked = h('div', { class: 'chips', 'data-testid': 'split-selection' });
    const formSlot = h('div');
    const moveOut = h('button', { type: 'button', class: 'button', 'data-testid': 'split-selected',
      onclick: () => showForm('groups') });
    ps.renderPick = () => {
      const keys = Array.from(ps.pick);
      picked.dataset.count = String(keys.length);
      replace(picked, keys.length ? keys.map((k) => identKey(k)) : h('span', { class: 'muted', text: 'nothing picked yet' }));
      moveOut.disabled = !keys.length;
      moveOut.textContent = keys.length ? `Move ${plural(keys.length, 'identifier')} out…` : 'Move picked out…';
    };
    const plans = {
      groups: {
        title: 'Move the picked identifiers out into a new profile',
        body: () => ({ groups: [Array.from(ps.pick)] }),
      },
      components: {
        title: 'Split into the parts that events link (probable and steward links are cut)',
        body: () => ({ mode: 'components' }),
      },
      identifiers: {
        title: 'Split every identifier into a profile of its own',
        body: () => ({ mode: 'identifiers' }),
      },
    };
    function showForm(mode) {
      const plan = plans[mode];
      const form = actionForm({
        testid: 'split-form',
        title: plan.title,
        confirm: 'Split',
        run: (reason, overrides) => send('POST', `/v1/profiles/${enc(ps.pid)}/split`,
          withOverride(Object.assign(plan.body(), { reason }), overrides)),
        done: (out) => {
          flash = { pid: out.profile_id, kind: 'split', answer: out };
          goProfile(out.profile_id);
        },
        cancel: () => clear(formSlot),
      });
      form.dataset.mode = mode;
      replace(formSlot, form);
    }
    replace(ps.panel, h('div', { class: 'split-panel', 'data-testid': 'split-panel' },
      h('div', { class: 'panel-title' }, h('span', { text: 'Split this profile' }),
        h('button', { type: 'button', class: 'button small', 'data-testid': 'split-close', text: 'Close', onclick: () => closeSplit(ps) })),
      h('p', { class: 'muted small', text: 'Tick identifiers in the list below, or click them in the identity graph, to move them out into a new profile. Links between the parts are kept refused (rule steward_split), so they are not merged again.' }),
      picked,
      h('div', { class: 'toolbar' }, moveOut,
        h('button', { type: 'button', class: 'button', 'data-testid': 'split-components', text: 'Split into linked parts…', onclick: () => showForm('components') }),
        h('button', { type: 'button', class: 'button', 'data-testid': 'split-identifiers', text: 'Every identifier alone…', onclick: () => showForm('identifiers') })),
      formSlot));
    ps.renderPick();
  }

  // ---- value history and pins

  function sameValue(a, b) {
    return JSON.stringify(a) === JSON.stringify(b);
  }

  function renderValues(ps, v) {
    const traits = Array.isArray(v.traits) ? v.traits : [];
    replace(ps.valuesSlot, section('Value history', 'values',
      h('p', { class: 'muted small', text: 'Every value each trait has had, where it came from, and which one the golden profile shows. Pin a value to show it whatever survivorship or later events say.' }),
      traits.length ? traits.map((t) => traitValues(ps, t)) : h('p', { class: 'muted', text: 'No trait values recorded.' })));
  }

  function traitValues(ps, t) {
    const values = Array.isArray(t.values) ? t.values : [];
    const formSlot = h('div', { class: 'trait-form' });
    const pinned = t.pinned || null;
    const refresh = (answer) => {
      renderValues(ps, answer);
      api(`/v1/profiles/${enc(ps.pid)}`, ps.signal).then((p) => {
        ps.profile = p;
        replace(ps.head, goldenCard(p, ps.requested));
      }).catch(() => {});
    };
    const pinForm = (value) => actionForm({
      testid: 'pin-form',
      title: `Pin ${t.name} to ${asText(value)}`,
      confirm: 'Pin',
      run: (reason) => send('PUT', `/v1/profiles/${enc(ps.pid)}/pins/${enc(t.name)}`, { value, reason }),
      done: refresh,
      cancel: () => clear(formSlot),
    });
    const unpinForm = () => actionForm({
      testid: 'unpin-form',
      title: `Unpin ${t.name}: survivorship decides again`,
      confirm: 'Unpin',
      run: (reason) => send('DELETE', `/v1/profiles/${enc(ps.pid)}/pins/${enc(t.name)}?${new URLSearchParams({ reason }).toString()}`),
      done: refresh,
      cancel: () => clear(formSlot),
    });
    const winner = t.winner || null;
    return h('div', { class: 'trait', 'data-testid': 'trait-values', 'data-trait': t.name, 'data-chosen-by': t.chosen_by || '' },
      h('div', { class: 'trait-head' },
        h('h3', { class: 'sub mono', text: t.name }),
        t.strategy ? h('span', { class: 'chip info', title: 'survivorship strategy', text: String(t.strategy).replace(/_/g, ' ') }) : null,
        h('span', { class: 'muted small' }, 'shows ', h('strong', { 'data-testid': 'trait-chosen', text: asText(t.chosen) || '—' }),
          pinned ? ' (pinned)' : winner ? [' from ', chips(winner.sources, 'source'),
            winner.event_id ? [' · event ', h('span', { class: 'mono', 'data-testid': 'winner-event', text: winner.event_id })] : null] : null)),
      pinned ? h('div', { class: 'notice pin-note', 'data-testid': 'pin-note' },
        h('strong', { text: 'Pinned' }), ' to ', h('span', { class: 'mono', text: asText(pinned.value) }),
        ' by ', h('span', { class: 'mono', text: pinned.actor || '—' }), ' on ', time(pinned.at),
        pinned.reason ? [': “', h('span', { text: pinned.reason }), '”'] : null, ' ',
        h('button', { type: 'button', class: 'button small', 'data-testid': 'value-unpin', text: 'Unpin…',
          onclick: () => replace(formSlot, unpinForm()) })) : null,
      h('table', { class: 'table values' },
        h('thead', {}, h('tr', {}, ['Value', 'Sources', 'Count', 'First seen', 'Last seen', 'Latest event', ''].map((c) => h('th', { text: c })))),
        h('tbody', {}, values.map((x) => {
          const isPinned = Boolean(pinned) && sameValue(pinned.value, x.value);
          return h('tr', { 'data-testid': 'value-row', 'data-chosen': String(Boolean(x.chosen)), 'data-pinned': String(isPinned),
            class: x.chosen || isPinned ? 'chosen' : null },
          h('td', { class: 'mono value-cell', 'data-testid': 'value-text', text: asText(x.value) }),
          h('td', {}, chips(x.sources, 'source')),
          h('td', { class: 'num', text: String(x.count ?? '—') }),
          h('td', { class: 'nowrap' }, time(x.first_seen)),
          h('td', { class: 'nowrap' }, time(x.last_seen)),
          h('td', { class: 'mono', text: x.event_id || '—' }),
          h('td', { class: 'nowrap' },
            x.chosen ? h('span', { class: 'chip ok', 'data-testid': 'value-won', text: 'shown' }) : null,
            isPinned ? h('span', { class: 'chip warn', text: 'pinned' }) : null,
            isPinned ? null : [' ', h('button', { type: 'button', class: 'button small', 'data-testid': 'value-pin', text: 'Pin…',
              onclick: () => replace(formSlot, pinForm(x.value)) })]));
        }))),
      formSlot);
  }

  // ---- review queue

  const REVIEW_PAGE = 20;

  function renderReview(r) {
    const signal = newView('review');
    const summary = h('p', { class: 'summary', 'data-testid': 'review-summary' });
    const list = h('div', { 'data-testid': 'review-list' }, loading('Loading the review queue…'));
    const pager = h('div', { class: 'more toolbar', 'data-testid': 'review-pager' });
    append(view, h('section', { class: 'review-page' },
      h('div', { class: 'page-head' }, h('h1', { text: 'Review queue' }),
        h('p', { class: 'muted', text: 'Pairs probabilistic matching was unsure of (scored under the threshold but over the review threshold), oldest first. Accept merges the two profiles; reject keeps them apart for good. Both are recorded with your reason.' })),
      summary, list, pager));
    const limit = Math.min(500, Math.max(1, Number.parseInt(r.limit, 10) || REVIEW_PAGE));
    const p = new URLSearchParams({ limit: String(limit) });
    if (r.after) p.set('after', r.after);
    // Paging keeps a page size given in the URL (`#/review?limit=50`).
    const pageHash = (after) => {
      const q = new URLSearchParams();
      if (after != null) q.set('after', String(after));
      if (r.limit) q.set('limit', String(limit));
      const qs = q.toString();
      return '#/review' + (qs ? '?' + qs : '');
    };
    api('/v1/review?' + p.toString(), signal).then((res) => {
      const items = Array.isArray(res.items) ? res.items : [];
      summary.dataset.count = String(items.length);
      replace(summary, items.length
        ? `${plural(items.length, 'item')}${r.after ? ` after #${r.after}` : ''}${res.next_after != null ? ' · more on the next page' : ''}.`
        : '');
      replace(list, items.length ? items.map(reviewItem)
        : h('p', { class: 'card muted', 'data-testid': 'review-empty', text: r.after ? 'No more items.' : 'Nothing to review: the queue is empty.' }));
      replace(pager,
        r.after ? h('a', { class: 'button', 'data-testid': 'review-first', href: pageHash(null), text: '← First page' }) : null,
        res.next_after != null ? h('a', { class: 'button', 'data-testid': 'review-next', href: pageHash(res.next_after), text: 'Next page →' }) : null);
    }).catch((e) => {
      if (isAbort(e)) return;
      replace(list, errorBox(e, 'review-error'));
    });
  }

  /** A golden profile's value of a matching field (the names `/v1/review` and why-not use). */
  function fieldValue(profile, name) {
    const t = (profile && profile.traits) || {};
    const addr = t.address && typeof t.address === 'object' ? t.address : {};
    let v;
    if (name === 'postcode') v = addr.postal_code;
    else if (name === 'city' || name === 'street' || name === 'region' || name === 'country') v = addr[name];
    else if (name === 'email') v = ((profile && profile.identifiers) || {}).email;
    else v = t[name];
    if (Array.isArray(v)) return v.map(asText).join(', ');
    return asText(v);
  }

  function weightCell(w, extra) {
    const n = Number(w);
    if (!Number.isFinite(n)) return h('td', { class: 'num muted', text: '—' });
    return h('td', { class: 'num' },
      h('span', { class: 'weight ' + (n > 0 ? 'pos' : n < 0 ? 'neg' : ''), 'data-testid': 'evidence-weight', text: (n > 0 ? '+' : '') + n.toFixed(2) }),
      extra || null);
  }

  function fieldRows(fields, left, right) {
    return fields.map((f) => h('tr', { 'data-testid': 'evidence-row', 'data-field': f.field },
      h('th', { class: 'mono', text: f.field }),
      left ? h('td', { class: 'side-value', text: left(f.field) || '—' }) : null,
      right ? h('td', { class: 'side-value', text: right(f.field) || '—' }) : null,
      h('td', { class: 'num muted', title: '0 is the strongest agreement', text: String(f.level ?? '—') }),
      weightCell(f.weight, typeof f.tf_adjustment === 'number'
        ? h('div', { class: 'muted small', text: `tf ${f.tf_adjustment >= 0 ? '+' : ''}${f.tf_adjustment.toFixed(2)}` }) : null)));
  }

  function reviewItem(item) {
    const a = item.a || {};
    const b = item.b || {};
    const fields = Array.isArray(item.fields) ? item.fields : [];
    const score = Number(item.score);
    const decision = h('div', { class: 'review-decision', 'data-testid': 'review-decision' });
    const sideHead = (label, s) => h('th', { class: 'side', 'data-testid': `review-side-${label.toLowerCase()}` },
      h('div', { class: 'side-label', text: label }),
      s.identifier ? identKey(s.identifier) : null,
      h('div', { class: 'side-name', text: fullName(s.profile) || 'Unnamed profile' }),
      h('div', {}, s.profile_id ? profileLink(s.profile_id) : h('span', { class: 'muted', text: 'identifier gone' })));
    const idents = (p) => Object.entries((p && p.identifiers) || {}).sort((x, y) => kindOrder(x[0], y[0]))
      .flatMap(([k, vs]) => Array.from(vs || []).map((v) => identKey(`${k}:${v}`)));
    const row = (label, f) => h('tr', { class: 'context-row' }, h('th', { text: label }),
      h('td', {}, f(a.profile)), h('td', {}, f(b.profile)), h('td'), h('td'));
    const buttons = [];
    const decide = (kind) => {
      replace(decision, actionForm({
        testid: 'review-form',
        title: kind === 'accept' ? 'Accept: merge the two profiles' : 'Reject: keep them apart for good',
        confirm: kind === 'accept' ? 'Accept' : 'Reject',
        run: (reason, overrides) => send('POST', `/v1/review/${enc(String(item.seq))}`, withOverride({ decision: kind, reason }, overrides)),
        done: (out) => {
          el.dataset.status = out.decision === 'accept' ? 'accepted' : 'rejected';
          for (const btn of buttons) btn.disabled = true;
          replace(decision, h('div', { class: 'result-box', role: 'status', 'data-testid': 'review-result', 'data-decision': out.decision },
            out.decision === 'accept'
              ? [h('strong', { text: 'Accepted. ' }), 'Both are now in ', profileLink(out.profile_id), out.absorbed ? [' (', h('span', { class: 'mono', text: out.absorbed }), ' absorbed)'] : null, '.']
              : [h('strong', { text: 'Rejected. ' }), 'Matching will not propose or make this link again.'],
            out.overridden ? h('div', { class: 'small' }, 'Overridden: ', h('span', { class: 'chip mono', text: out.overridden })) : null));
        },
        cancel: () => clear(decision),
      }));
    };
    buttons.push(
      h('button', { type: 'button', class: 'button primary', 'data-testid': 'review-accept', text: 'Accept…', onclick: () => decide('accept') }),
      h('button', { type: 'button', class: 'button danger', 'data-testid': 'review-reject', text: 'Reject…', onclick: () => decide('reject') }));
    const el = h('article', { class: 'card review-item', 'data-testid': 'review-item', 'data-seq': String(item.seq), 'data-status': item.status || '' },
      h('div', { class: 'card-head' },
        h('h2', { class: 'card-title', text: `#${item.seq}` }),
        h('span', { class: 'chip ' + (item.status === 'open' ? 'info' : 'warn'), 'data-testid': 'review-status', text: item.status || '—' }),
        Number.isFinite(score) ? h('span', { class: 'score-badge', 'data-testid': 'review-score', text: `score ${score.toFixed(3)}` }) : null,
        h('span', { class: 'muted small' }, 'from ', h('span', { class: 'chip source', text: item.source || '—' }),
          item.event_id ? [' event ', h('span', { class: 'mono', text: item.event_id })] : null, ' · ', time(item.at))),
      h('table', { class: 'table side-by-side', 'data-testid': 'review-compare' },
        h('thead', {}, h('tr', {}, h('th', { text: 'Field' }), sideHead('A', a), sideHead('B', b),
          h('th', { class: 'num', text: 'Level' }), h('th', { class: 'num', text: 'Weight' }))),
        h('tbody', {}, fieldRows(fields, (f) => fieldValue(a.profile, f), (f) => fieldValue(b.profile, f)),
          row('Identifiers', (p) => h('div', { class: 'idents' }, idents(p))),
          row('Sources', (p) => chips(p && p.sources, 'source')))),
      h('div', { class: 'toolbar' }, buttons,
        a.identifier && b.identifier ? h('a', { class: 'button', href: '#/why-not?' + new URLSearchParams({ a: a.identifier, b: b.identifier }).toString(), text: 'Why not?' }) : null),
      decision);
    return el;
  }

  // ---- why not?

  const VERDICTS = {
    same_profile: 'They are one person',
    unknown: 'An identifier was never seen',
    suppressed: 'An identifier was erased',
    refused: 'A rule refused to link them',
    matching_off: 'Nothing links them and matching is off',
    no_record: 'No person traits to compare',
    no_candidate: 'They were never compared',
    below_threshold: 'Their records score under the threshold',
    names_only: 'They agree on names only',
    guard: 'Held apart by the cluster guard',
    would_match: 'They would match now',
  };

  function renderWhyNot(r) {
    const signal = newView('why-not');
    const a = h('input', { type: 'text', class: 'mono ident-input', 'data-testid': 'whynot-a', value: r.a, placeholder: 'email:ann@example.com', 'aria-label': 'Identifier A' });
    const b = h('input', { type: 'text', class: 'mono ident-input', 'data-testid': 'whynot-b', value: r.b, placeholder: 'phone:+16175550100', 'aria-label': 'Identifier B' });
    const slot = h('div', { 'data-testid': 'whynot-slot' });
    append(view,
      h('form', { class: 'card whynot-form', 'data-testid': 'whynot-form', onsubmit: (ev) => {
        ev.preventDefault();
        const hash = '#/why-not?' + new URLSearchParams({ a: a.value.trim(), b: b.value.trim() }).toString();
        if (location.hash === hash) route();
        else location.hash = hash;
      } },
      h('h1', { text: 'Why not one person?' }),
      h('p', { class: 'muted', text: 'Two identifiers as kind:value. The answer says why they are (not) in one profile: a rule that refused the link, a score under the threshold with each field\u2019s weight, or no comparison at all.' }),
      h('div', { class: 'form-row' },
        h('label', { class: 'filter grow' }, h('span', { text: 'A' }), a),
        h('label', { class: 'filter grow' }, h('span', { text: 'B' }), b),
        h('button', { type: 'submit', class: 'button primary', 'data-testid': 'whynot-submit', text: 'Explain' }))),
      slot);
    if (!r.a || !r.b) {
      (r.a ? b : a).focus();
      return;
    }
    replace(slot, h('section', { class: 'card' }, loading('Asking…')));
    api('/v1/explain?' + new URLSearchParams({ a: r.a, b: r.b }).toString(), signal)
      .then((res) => replace(slot, verdictCard(res)))
      .catch((e) => {
        if (!isAbort(e)) replace(slot, h('section', { class: 'card' }, errorBox(e, 'whynot-error')));
      });
  }

  function verdictCard(res) {
    const verdict = asText(res.verdict);
    const profiles = res.profiles || {};
    const side = (key, pid) => h('span', {}, identKey(asText(key)), ' ',
      pid ? profileLink(pid) : h('span', { class: 'muted', text: 'no profile' }));
    const refused = Array.isArray(res.refused_links) ? res.refused_links : [];
    const conflicts = Array.isArray(res.conflicts) ? res.conflicts : [];
    const m = res.match && typeof res.match === 'object' ? res.match : null;
    const bl = res.blocking && typeof res.blocking === 'object' ? res.blocking : null;
    const keyChips = (list) => chips(Array.from(list || []).map(asText), 'mono');
    const num = (x, d) => (typeof x === 'number' ? x.toFixed(d) : '—');
    return h('section', { class: 'card verdict-card', 'data-testid': 'whynot-result', 'data-verdict': verdict },
      h('div', { class: 'card-head' },
        h('span', { class: 'chip verdict verdict-' + verdict, 'data-testid': 'whynot-verdict', text: verdict }),
        h('h2', { class: 'card-title', text: VERDICTS[verdict] || verdict })),
      res.reason ? h('p', { class: 'verdict-reason', 'data-testid': 'whynot-reason', text: asText(res.reason) }) : null,
      res.message ? h('p', { class: 'verdict-reason', text: asText(res.message) }) : null,
      h('dl', { class: 'kv' },
        field('A', side(res.a, profiles.a)),
        field('B', side(res.b, profiles.b))),
      refused.length ? [h('h3', { class: 'sub', text: 'Refused links' }),
        h('table', { class: 'table', 'data-testid': 'whynot-refused' },
          h('thead', {}, h('tr', {}, ['Link', 'Rule', 'Sources', 'Events'].map((c) => h('th', { text: c })))),
          h('tbody', {}, refused.map((x) => h('tr', {},
            h('td', {}, identKey(asText(x.a)), h('span', { class: 'muted', text: ' ↔ ' }), identKey(asText(x.b))),
            h('td', { class: 'mono', 'data-testid': 'refused-rule', text: asText(x.rule) }),
            h('td', {}, chips(x.sources, 'source')),
            h('td', { class: 'mono small', text: Array.from(x.event_ids || []).join(', ') || '—' })))))] : null,
      conflicts.length ? [h('h3', { class: 'sub', text: 'Conflicts recorded' }),
        h('table', { class: 'table', 'data-testid': 'whynot-conflicts' },
          h('thead', {}, h('tr', {}, ['Rule', 'When', 'Event', 'Detail'].map((c) => h('th', { text: c })))),
          h('tbody', {}, conflicts.map((c) => h('tr', {},
            h('td', { class: 'mono', text: asText(c.rule) }),
            h('td', { class: 'nowrap' }, time(c.at)),
            h('td', { class: 'mono', text: asText(c.event_id) || '—' }),
            h('td', { class: 'small', text: asText(c.detail) || '—' })))))] : null,
      bl ? [h('h3', { class: 'sub', text: 'Blocking keys' }),
        h('dl', { class: 'kv', 'data-testid': 'whynot-blocking' },
          field('A', keyChips(bl.a)), field('B', keyChips(bl.b)), field('Shared', keyChips(bl.shared)),
          (bl.too_common || []).length ? field('Too common', keyChips(bl.too_common)) : null)] : null,
      m ? [h('h3', { class: 'sub', text: 'Best pair of records' }),
        h('dl', { class: 'kv', 'data-testid': 'whynot-match' },
          field('Probability', h('span', { class: 'mono', text: num(m.probability, 4) })),
          field('Threshold', h('span', { class: 'mono', text: num(m.threshold, 2) })),
          field('Weight', h('span', { class: 'mono', text: num(m.weight, 2) })),
          Array.isArray(m.records) ? field('Records', m.records.map((k) => identKey(asText(k)))) : null),
        Array.isArray(m.fields) && m.fields.length ? h('table', { class: 'table', 'data-testid': 'whynot-fields' },
          h('thead', {}, h('tr', {}, ['Field', 'Level', 'Weight'].map((c) => h('th', { text: c, class: c === 'Field' ? null : 'num' })))),
          h('tbody', {}, fieldRows(m.fields))) : null] : null);
  }

  // ---------------------------------------------------------------- start

  if (typeof cytoscape !== 'function') {
    replace(view, h('div', { class: 'card' }, errorBox({ code: 'missing_asset', message: 'Cytoscape.js did not load (/assets/cytoscape.min.js).' })));
  }
  // No key yet: ask for it first, before the agent types a search that could only fail.
  if (apiKey()) route();
  else showKeyForm('Paste your API key to start (idgraph demo prints one; otherwise ask your administrator).');
})();
