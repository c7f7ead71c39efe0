// The playground sends exactly what was typed (numbers as numbers, anything else as text) and
// lets the server judge it: the page shows an error exactly where the server found one, so the API
// and the page can never disagree about what is valid. The server's reasons are worded for API
// clients ("must be a JSON number, got string"); the page words them for people (reasonForPeople).
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

  // A field the page sent as text did not read as a number, so that is what the server refused;
  // any other reason (a value outside its range) is already plain words, said with the field's name.
  function reasonForPeople(name, sent, reason) {
    if (typeof sent === "string") {
      return sent === "" ? name + " is empty: enter a number" : name + " must be a number";
    }
    return name + " " + reason;
  }

  function showErrors(body, record) {
    const error = body && body.error ? body.error : { message: "unexpected answer", details: [] };
    let placed = false;
    for (const d of error.details || []) {
      const field = form.querySelector('.field[data-field="' + d.field + '"]');
      if (field) {
        field.classList.add("invalid");
        field.querySelector(".error").textContent = reasonForPeople(d.field, record[d.field], d.reason);
        placed = true;
      }
    }
    if (!placed) formError.textContent = error.message;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    clearErrors();
    result.hidden = true;
    const record = readRecord();
    let response;
    try {
      response = await fetch("predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(record),
      });
    } catch (err) {
      formError.textContent = "The server could not be reached.";
      return;
    }
    const body = await response.json().catch(function () { return null; });
    if (!response.ok) {
      showErrors(body, record);
      return;
    }
    price.textContent = dollars.format(body.price_usd);
    version.textContent = body.model_version;
    result.hidden = false;
  });
})();
