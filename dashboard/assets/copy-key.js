// The new-key page's copy button: shown only where the clipboard can be written; without it (or
// without JavaScript) the read-only field still lets the key be selected and copied.
(function () {
  var button = document.getElementById("copy-key");
  var field = document.getElementById("new-key");
  var done = document.getElementById("copy-done");
  if (!button || !field || !navigator.clipboard) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(function () { done.textContent = "Copied."; });
  });
})();
