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
  const KIND_ORDER = ['customer_id', 'loyalty_id', 'email', 'phone', 'device_id', 'cookie_id'];
  const KIND_LABEL = {
    customer_id: 'Customer id',
    loyalty_id: 'Loyalty id',
    email: 'Email',
    phone: 'Phone',
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

  /** GET a JSON API path; errors become ApiError with the server's code/message/field. */
  async function api(path, signal) {
    let resp;
    try {
      const headers = { accept: 'application/json' };
      if (apiKey()) headers.authorization = `Bearer ${apiKey()}`;
      resp = await fetch(path, { signal, headers });
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
    if (resp.status === 401) {
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
    } else {
      renderHome();
    }
    document.title = r.name === 'profile' ? `${r.id} · idgraph console` : 'idgraph console';
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
    const graph = graphSection(pid, signal, (nodes) => {
      replace(identifiersSlot, h('h2', { class: 'card-title', text: 'Identifiers' }), identifiersBody(profile, nodes));
    });
    replace(head, goldenCard(profile, requested));
    append(view, graph.el, identifiersSlot, devicesSlot,
      h('div', { class: 'grid-2' }, householdSlot, historySlot));
    graph.load(1);

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
    const extra = t.extra && typeof t.extra === 'object' ? Object.entries(t.extra) : [];
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
        extra.map(([k, v]) => field(k, asText(v)))));
  }

  function stat(value, label) {
    return h('div', { class: 'stat' }, h('span', { class: 'stat-value', text: value }), h('span', { class: 'stat-label', text: label }));
  }

  /** Identifiers by kind; provenance from the graph's nodes when they have arrived. */
  function identifiersBody(profile, nodes) {
    const byKey = new Map((nodes || []).map((n) => [n.id, n]));
    const kinds = Object.keys(profile.identifiers || {}).sort(kindOrder);
    if (!kinds.length) return h('p', { class: 'muted', text: 'No identifiers.' });
    const cols = ['Value', 'Sources', 'First seen', 'Last seen', 'Events'];
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

  // ---------------------------------------------------------------- start

  if (typeof cytoscape !== 'function') {
    replace(view, h('div', { class: 'card' }, errorBox({ code: 'missing_asset', message: 'Cytoscape.js did not load (/assets/cytoscape.min.js).' })));
  }
  route();
})();
