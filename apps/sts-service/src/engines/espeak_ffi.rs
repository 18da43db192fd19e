//! A minimal direct binding to libespeak-ng (synchronous mode).
//!
//! The crates.io `espeakng` crate segfaulted in its callback with Debian's library, so
//! this binds the five functions needed. libespeak-ng keeps global state and is not
//! thread-safe: every call must come from the one thread that owns [`Espeak`].

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CString};

#[link(name = "espeak-ng")]
extern "C" {
    fn espeak_Initialize(
        output: c_int,
        buflength: c_int,
        path: *const c_char,
        options: c_int,
    ) -> c_int;
    fn espeak_SetSynthCallback(cb: extern "C" fn(*mut c_short, c_int, *mut c_void) -> c_int);
    fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
    fn espeak_SetParameter(parameter: c_int, value: c_int, relative: c_int) -> c_int;
    fn espeak_Synth(
        text: *const c_void,
        size: usize,
        position: c_uint,
        position_type: c_int,
        end_position: c_uint,
        flags: c_uint,
        unique_identifier: *mut c_uint,
        user_data: *mut c_void,
    ) -> c_int;
    fn espeak_Synchronize() -> c_int;
}

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const ESPEAK_INITIALIZE_DONT_EXIT: c_int = 0x8000;
const ESPEAK_RATE: c_int = 1;
const POS_CHARACTER: c_int = 1;
const ESPEAK_CHARS_UTF8: c_uint = 1;
const EE_OK: c_int = 0;

thread_local! {
    static BUF: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn synth_cb(wav: *mut c_short, n: c_int, _events: *mut c_void) -> c_int {
    if !wav.is_null() && n > 0 {
        // SAFETY: espeak passes `n` valid samples at `wav` for the duration of the call.
        let s = unsafe { std::slice::from_raw_parts(wav, n as usize) };
        BUF.with(|b| b.borrow_mut().extend_from_slice(s));
    }
    0 // continue synthesis
}

/// Errors of the espeak binding.
#[derive(Debug, thiserror::Error)]
pub enum EspeakError {
    /// Initialisation failed (library or data missing).
    #[error("espeak-ng initialisation failed (is espeak-ng-data installed?)")]
    Init,
    /// Unknown voice.
    #[error("espeak-ng has no voice {0:?} (see `espeak-ng --voices`)")]
    Voice(String),
    /// Synthesis error code.
    #[error("espeak-ng synthesis failed with code {0}")]
    Synth(i32),
}

/// The initialised library. Not `Send`: create and use it on one thread.
pub struct Espeak {
    rate: u32,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Espeak {
    /// Initialises the library in synchronous mode and returns it with its sample rate.
    pub fn init() -> Result<Self, EspeakError> {
        // SAFETY: FFI calls with valid arguments; null path = default data directory.
        let rate = unsafe {
            espeak_Initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                std::ptr::null(),
                ESPEAK_INITIALIZE_DONT_EXIT,
            )
        };
        if rate <= 0 {
            return Err(EspeakError::Init);
        }
        // SAFETY: the callback is a plain extern "C" fn with the expected signature.
        unsafe { espeak_SetSynthCallback(synth_cb) };
        Ok(Self {
            rate: rate as u32,
            _not_send: std::marker::PhantomData,
        })
    }

    /// Output sample rate (22050 Hz for espeak-ng).
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Selects a voice by name (`es`, `en-us`, ...).
    pub fn set_voice(&mut self, name: &str) -> Result<(), EspeakError> {
        let c = CString::new(name).map_err(|_| EspeakError::Voice(name.into()))?;
        // SAFETY: valid NUL-terminated string.
        let r = unsafe { espeak_SetVoiceByName(c.as_ptr()) };
        if r == EE_OK {
            Ok(())
        } else {
            Err(EspeakError::Voice(name.into()))
        }
    }

    /// Synthesises `text` at `wpm` words per minute; returns s16 mono samples.
    pub fn synth(&mut self, text: &str, wpm: u32) -> Result<Vec<i16>, EspeakError> {
        let c = CString::new(text.replace('\0', " ")).map_err(|_| EspeakError::Synth(-1))?;
        BUF.with(|b| b.borrow_mut().clear());
        // SAFETY: valid parameters; synchronous mode runs the callback on this thread
        // before espeak_Synth returns.
        let r = unsafe {
            espeak_SetParameter(ESPEAK_RATE, wpm.clamp(80, 450) as c_int, 0);
            let r = espeak_Synth(
                c.as_ptr().cast(),
                c.as_bytes_with_nul().len(),
                0,
                POS_CHARACTER,
                0,
                ESPEAK_CHARS_UTF8,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            espeak_Synchronize();
            r
        };
        if r != EE_OK {
            return Err(EspeakError::Synth(r));
        }
        Ok(BUF.with(|b| std::mem::take(&mut *b.borrow_mut())))
    }
}
