// The playground sends exactly what was typed (numbers as numbers, anything else as text) and
// lets the server judge it: the page shows the server's own per-field errors, so the API and the
// page can never disagree about what is valid.
(function () {
  "use strict";
  const form = document.getElementById("predict-form");
  const result = document.getElementById("result");
  const price = document.getElementById("price");
  const version = document.getElementById("model-version");
  const formError = document.getElementById("form-error");
  const dollars = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });

  function clearErrors() {
    formError.textContent = "";
    for (const el of form.querySelectorAll(".field")) {
      el.classList.remove("invalid");
      el.querySelector(".error").textContent = "";
    }
  }

  function readRecord() {
    const record = {};
    for (const input of form.querySelectorAll("input")) {
      const text = input.value.trim();
      const number = Number(text);
      record[input.name] = text !== "" && Number.isFinite(number) ? number : text;
    }
    return record;
  }

  function showErrors(body) {
    const error = body && body.error ? body.error : { message: "unexpected answer", details: [] };
    let placed = false;
    for (const d of error.details || []) {
      const field = form.querySelector('.field[data-field="' + d.field + '"]');
      if (field) {
        field.classList.add("invalid");
        field.querySelector(".error").textContent = d.reason;
        placed = true;
      }
    }
    if (!placed) formError.textContent = error.message;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    clearErrors();
    result.hidden = true;
    let response;
    try {
      response = await fetch("predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(readRecord()),
      });
    } catch (err) {
      formError.textContent = "The server could not be reached.";
      return;
    }
    const body = await response.json().catch(function () { return null; });
    if (!response.ok) {
      showErrors(body);
      return;
    }
    price.textContent = dollars.format(body.price_usd);
    version.textContent = body.model_version;
    result.hidden = false;
  });
})();
