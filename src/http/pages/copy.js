// The copy button of the page that shows a new token once. Without
// script the button stays hidden and the token can be selected by hand.
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("copy");
  var value = document.getElementById("new-token");
  if (!button || !value) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    var selectIt = function () {
      var range = document.createRange();
      range.selectNodeContents(value);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(value.textContent).then(function () {
        button.textContent = "Copied";
      }, selectIt);
    } else {
      selectIt();
    }
  });
});
