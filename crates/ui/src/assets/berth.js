// berth's only script: copy buttons and delete confirmations. Pages work
// without it, except that copying is then done by hand.
"use strict";

function copyStatus(button, text) {
  const status = button.parentElement.querySelector(".copy-status");
  if (status) status.textContent = text;
}

async function copy(button) {
  const text = button.dataset.copy;
  try {
    await navigator.clipboard.writeText(text);
    button.dataset.copied = text;
    copyStatus(button, "Copied");
  } catch (_) {
    // No clipboard access (an old browser, plain http on another host):
    // select the text so that Ctrl+C copies it.
    const code = document.getElementById(button.getAttribute("aria-controls"));
    if (code) {
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (document.execCommand && document.execCommand("copy")) {
        button.dataset.copied = text;
        copyStatus(button, "Copied");
        return;
      }
    }
    copyStatus(button, "Selected: press Ctrl+C to copy");
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (button) copy(button);
});

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
