// MathJax 3, served from this site (assets/mathjax/, copied from the django-static-mathjax wheel at build time).
// pymdownx.arithmatex (generic mode) wraps $...$ / $$...$$ in <span|div class="arithmatex">\(..\) / \[..\]</span>.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  startup: {
    // Inline maths never wraps: an inline equation wider than its paragraph (a phone screen) would widen the whole
    // page. Such equations get the class nb-wide (assets/extra.css): a block of their own that scrolls sideways.
    pageReady() {
      return MathJax.startup.defaultPageReady().then(() => {
        const mark = () => document.querySelectorAll("mjx-container:not([display=true])").forEach((c) => {
          c.classList.remove("nb-wide");
          const box = c.parentElement && c.parentElement.closest("p, li, td, th, dd, div, article");
          if (!box) return;
          const r = box.getBoundingClientRect(), pad = parseFloat(getComputedStyle(box).paddingRight) || 0;
          if (c.getBoundingClientRect().right > r.right - pad + 0.5) c.classList.add("nb-wide");
        });
        mark();
        window.addEventListener("resize", mark);
      });
    },
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
    enableMenu: false,
  },
};
