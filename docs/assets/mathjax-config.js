// MathJax 3, served from this site (assets/mathjax/, copied from the django-static-mathjax wheel at build time).
// pymdownx.arithmatex (generic mode) wraps $...$ / $$...$$ in <span|div class="arithmatex">\(..\) / \[..\]</span>.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
    enableMenu: false,
  },
};
