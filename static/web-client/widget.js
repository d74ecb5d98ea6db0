// The Jabberwock chat widget: the web client of the server this script is loaded from, on
// any other site, in an iframe. Load it once, and mark where the chat goes:
//
//   <div data-jabberwock data-domain="example.org" data-theme="dark"></div>
//   <script src="https://chat.example.org/widget.js" async></script>
//
// or configure it with an object set before the script runs (or call
// `Jabberwock.mount(element, options)` later):
//
//   <script>window.jabberwock = { mount: "#chat", domain: "example.org", launcher: true };</script>
//
// Options (data-* attributes, or the object's keys): domain, endpoint, jid (the address the
// sign-in form starts with), theme (light, dark or system), away-after (seconds; 0:
// never), title, and launcher: instead of filling the element, a chat button in the
// corner of the page that opens the client in a panel. Only this page layout lives here;
// the client itself is the same build as the server's own page.
(function () {
    'use strict';
    const script = document.currentScript;
    const origin = new URL(script ? script.src : location.href).origin;
    const PARAMS = { domain: 'domain', endpoint: 'endpoint', jid: 'jid', theme: 'theme', awayAfter: 'away-after', 'away-after': 'away-after' };

    function frame(options) {
        const params = new URLSearchParams({ widget: '1' });
        for (const [key, param] of Object.entries(PARAMS)) {
            if (options[key] != null && options[key] !== '') params.set(param, String(options[key]));
        }
        const f = document.createElement('iframe');
        f.src = `${origin}/?${params}`;
        f.title = options.title || 'Chat';
        f.setAttribute('allow', 'clipboard-write');
        f.style.cssText = 'display:block;width:100%;height:100%;border:0;border-radius:inherit;background:transparent';
        return f;
    }

    function mount(element, options = {}) {
        if (!element || element.dataset.jabberwockMounted) return;
        element.dataset.jabberwockMounted = '1';
        const launcher = options.launcher === true || options.launcher === '' || options.launcher === 'true';
        if (!launcher) {
            if (!element.style.height && element.clientHeight < 200) element.style.height = '560px';
            element.appendChild(frame(options));
            return;
        }
        const panel = document.createElement('div');
        panel.style.cssText = 'position:fixed;right:20px;bottom:88px;width:min(380px,calc(100vw - 40px));height:min(600px,calc(100vh - 120px));'
            + 'z-index:2147483000;border-radius:16px;overflow:hidden;box-shadow:0 12px 40px rgba(16,24,40,.25);display:none';
        const button = document.createElement('button');
        button.type = 'button';
        button.setAttribute('aria-label', options.title || 'Chat');
        button.setAttribute('aria-expanded', 'false');
        button.style.cssText = 'position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;cursor:pointer;'
            + 'z-index:2147483000;background:#4f46e5;box-shadow:0 6px 20px rgba(79,70,229,.4);display:flex;align-items:center;justify-content:center';
        button.innerHTML = '<svg viewBox="0 0 32 32" width="28" height="28" aria-hidden="true"><path d="M9 10.5h14a2.5 2.5 0 0 1 2.5 2.5v6.5a2.5 2.5 0 0 1-2.5 2.5h-7l-4.5 3.5v-3.5H9A2.5 2.5 0 0 1 6.5 19.5V13A2.5 2.5 0 0 1 9 10.5z" fill="#fff"/></svg>';
        button.addEventListener('click', () => {
            const open = panel.style.display === 'none';
            if (open && !panel.firstChild) panel.appendChild(frame(options));
            panel.style.display = open ? 'block' : 'none';
            button.setAttribute('aria-expanded', String(open));
        });
        element.append(panel, button);
    }

    function fromAttributes(element) {
        const d = element.dataset;
        return { domain: d.domain, endpoint: d.endpoint, jid: d.jid, theme: d.theme, awayAfter: d.awayAfter, title: d.title, launcher: d.launcher };
    }

    function start() {
        document.querySelectorAll('[data-jabberwock]').forEach((el) => mount(el, fromAttributes(el)));
        const config = window.jabberwock;
        if (config && typeof config === 'object') {
            const target = typeof config.mount === 'string' ? document.querySelector(config.mount) : config.mount;
            mount(target || document.body.appendChild(document.createElement('div')), config);
        }
    }

    window.Jabberwock = { mount };
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
    else start();
})();
