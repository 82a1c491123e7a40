"use strict";
// "Send test alert" on a destination's add and change pages: posts the form's current values to
// the test endpoint and shows the answer above the button. The page is not reloaded, so nothing
// typed is lost (the key input is write-only and would come back blank). Without this script the
// button still submits the form to the same endpoint, which answers with a message on a new page.
{
  const MARK = "testAlert"; // data-test-alert: the error lists and invalid marks this script adds

  function clearErrors(form) {
    for (const list of form.querySelectorAll("ul.errorlist[data-test-alert]")) {
      list.closest(".flex-container")?.classList.remove("errors");
      list.remove();
    }
    for (const input of form.querySelectorAll("[data-test-alert-invalid]")) {
      input.removeAttribute("aria-invalid");
      delete input.dataset.testAlertInvalid;
    }
  }

  // Each field's errors where the admin puts them after a refused Save: above the input.
  function showErrors(form, errors) {
    for (const [name, messages] of Object.entries(errors)) {
      const input = form.elements.namedItem(name);
      const box = input instanceof Element ? input.closest(".flex-container") : null;
      if (!box) continue; // not a field: the message above the button names it
      const list = document.createElement("ul");
      list.className = "errorlist";
      list.id = `${input.id}_error`;
      list.dataset[MARK] = "";
      for (const message of messages) {
        const item = document.createElement("li");
        item.textContent = message;
        list.append(item);
      }
      let before = input;
      while (before.parentElement !== box) before = before.parentElement;
      box.classList.add("errors");
      box.insertBefore(list, before);
      input.setAttribute("aria-invalid", "true");
      input.dataset.testAlertInvalid = "";
    }
  }

  function showResult(area, level, message) {
    const list = document.createElement("ul");
    list.className = "messagelist";
    const item = document.createElement("li");
    if (level) item.className = level;
    item.textContent = message;
    list.append(item);
    area.replaceChildren(list);
  }

  async function send(button, form) {
    const response = await fetch(button.formAction, {
      method: "POST",
      body: new FormData(form), // carries the CSRF token of the form
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    const type = response.headers.get("Content-Type") || "";
    if (!type.includes("application/json")) {
      // A login page after the session ended, or a refusal page: nothing was sent.
      throw new Error(
        `the admin answered ${response.status} ${response.statusText} instead of a result; ` +
          "reload the page (you may need to log in again)",
      );
    }
    return response.json();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("send-test-alert");
    const area = document.getElementById("test-alert-result");
    if (!button || !area || !button.form) return;
    const form = button.form;
    button.addEventListener("click", async (event) => {
      event.preventDefault();
      button.disabled = true;
      area.setAttribute("aria-busy", "true");
      clearErrors(form);
      showResult(area, "", "Sending the test alert…");
      try {
        const answer = await send(button, form);
        showErrors(form, answer.errors || {});
        showResult(area, answer.level, answer.message);
      } catch (error) {
        showResult(area, "error", `Test alert not sent: ${error.message}. Nothing was saved.`);
      } finally {
        button.disabled = false;
        area.removeAttribute("aria-busy");
      }
    });
  });
}
