//! The send box: Enter (or the button) publishes, the box clears, errors show beside it.

use web_sys::HtmlInputElement;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    /// Publishes the text; `Err` says why it was refused.
    pub on_send: Callback<String, Result<(), String>>,
    pub enabled: bool,
}

#[function_component(Composer)]
pub fn composer(props: &Props) -> Html {
    let input = use_node_ref();
    let error = use_state(|| None::<String>);
    let send = {
        let input = input.clone();
        let error = error.clone();
        let on_send = props.on_send.clone();
        Callback::from(move |_| {
            let Some(el) = input.cast::<HtmlInputElement>() else {
                return;
            };
            let text = el.value();
            if text.trim().is_empty() {
                return;
            }
            match on_send.emit(text) {
                Ok(()) => {
                    el.set_value("");
                    error.set(None);
                }
                Err(why) => error.set(Some(why)),
            }
        })
    };
    // Mark when the box first takes text, so start-up can be measured from navigation.
    use_effect_with(props.enabled, |enabled| {
        if *enabled && let Some(p) = web_sys::window().and_then(|w| w.performance()) {
            let _ = p.mark("hearsay:composer-ready");
        }
    });
    let onkeydown = {
        let send = send.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" {
                e.prevent_default();
                send.emit(());
            }
        })
    };
    let onsubmit = {
        let send = send.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            send.emit(());
        })
    };
    html! {
        <form class="composer" {onsubmit}>
            <label for="compose" class="sr-only">{ "Message to the network" }</label>
            <input ref={input} id="compose" type="text" placeholder="Say something to the network"
                   autocomplete="off" maxlength="65536" disabled={!props.enabled} {onkeydown} />
            <button type="submit" disabled={!props.enabled}>{ "Send" }</button>
            if let Some(why) = &*error { <p class="error" role="alert">{ why }</p> }
        </form>
    }
}
