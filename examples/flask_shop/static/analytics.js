/* A stand-in for an analytics snippet: runs only once "Improve our content" is granted. */
document.cookie = "_ga_shop=GA1.2." + Date.now() + "; path=/; max-age=" + 390 * 86400 + "; SameSite=Lax";
